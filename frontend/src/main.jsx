// Entry point: session check, sign-in, the nav bar and hash routing between the pages.
import 'leaflet/dist/leaflet.css';
import './app.css';
import { render } from 'preact';
import { useCallback, useEffect, useMemo, useRef, useState } from 'preact/hooks';
import { api, onUnauthorized, SESSION } from './api.js';
import { Feed } from './live.js';
import { Fleet } from './store.js';
import { AppContext, Toasts } from './components/ui.jsx';
import { SignIn } from './pages/SignIn.jsx';
import { FleetMap } from './pages/FleetMap.jsx';
import { Track } from './pages/Track.jsx';
import { Alarms } from './pages/Alarms.jsx';
import { Commands } from './pages/Commands.jsx';
import { Devices } from './pages/Devices.jsx';
import { Users } from './pages/Users.jsx';
import { Webhooks } from './pages/Webhooks.jsx';
import { Geofences } from './pages/Geofences.jsx';
import { can, hashFor, humanize, parseHash } from './util.js';

const PAGES = [
  { path: 'map', title: 'Fleet', component: FleetMap },
  { path: 'track', title: 'Track', component: Track },
  { path: 'alarms', title: 'Alarms', component: Alarms },
  { path: 'commands', title: 'Commands', component: Commands },
  { path: 'devices', title: 'Devices', component: Devices },
  { path: 'users', title: 'Users', component: Users },
  { path: 'geofences', title: 'Geofences', component: Geofences },
  { path: 'webhooks', title: 'Webhooks', component: Webhooks, role: 'admin' },
];

function useRoute() {
  const [route, setRoute] = useState(() => parseHash(location.hash));
  useEffect(() => {
    const onHash = () => setRoute(parseHash(location.hash));
    window.addEventListener('hashchange', onHash);
    return () => window.removeEventListener('hashchange', onHash);
  }, []);
  return route;
}

export function navigate(path, params, { replace = false } = {}) {
  const hash = hashFor(path, params);
  if (replace) history.replaceState(null, '', hash);
  if (replace || location.hash === hash) window.dispatchEvent(new HashChangeEvent('hashchange'));
  else location.hash = hash;
}

let toastIds = 0;

function App() {
  const [session, setSession] = useState(undefined); // undefined: checking; null: signed out
  const [notice, setNotice] = useState(null);
  const [toasts, setToasts] = useState([]);

  const toast = useCallback((text, kind = 'info') => {
    const id = ++toastIds;
    setToasts((t) => [...t.slice(-4), { id, text, kind }]);
    setTimeout(() => setToasts((t) => t.filter((x) => x.id !== id)), kind === 'error' ? 8000 : 4000);
  }, []);
  const dismiss = useCallback((id) => setToasts((t) => t.filter((x) => x.id !== id)), []);

  // on load: is there a session? (a server that cannot be reached is asked again every 5 s)
  const checkSession = useCallback(async () => {
    try {
      setSession(await api('GET', SESSION));
    } catch (err) {
      if (err.status === 401) setSession(null);
      else {
        setNotice(`The server cannot be reached (${err.message}). Retrying…`);
        setTimeout(checkSession, 5000);
      }
    }
  }, []);

  // while signed in (the events feed was refused): only a 401 changes anything
  const probeSession = useCallback(async () => {
    try {
      await api('GET', SESSION);
    } catch (err) {
      if (err.status === 401) {
        setNotice('Your session has ended. Please sign in again.');
        setSession(null);
      }
    }
  }, []);

  useEffect(() => {
    checkSession();
    onUnauthorized(() => {
      setNotice('Your session has ended. Please sign in again.');
      setSession(null);
    });
  }, []);

  if (session === undefined) return <div class="splash">{notice || 'Loading…'}</div>;
  if (session === null) {
    return (
      <SignIn notice={notice} onSignedIn={(s) => {
        setNotice(null);
        setSession(s);
      }} />
    );
  }
  return (
    <>
      <Console key={session.username} session={session} toast={toast} probeSession={probeSession}
        onSignOut={() => setSession(null)} />
      <Toasts items={toasts} dismiss={dismiss} />
    </>
  );
}

function Console({ session, toast, onSignOut, probeSession }) {
  const route = useRoute();
  const authCheck = useRef(0);
  const feed = useMemo(() => new Feed({
    onAuthLost: () => {
      // the handshake was refused or the feed was closed for auth reasons: is the session still good?
      if (Date.now() - authCheck.current > 5000) {
        authCheck.current = Date.now();
        probeSession();
      }
    },
  }), []);
  const fleet = useMemo(() => new Fleet(feed), [feed]);
  const [feedState, setFeedState] = useState(feed.state);

  useEffect(() => {
    const off = feed.onState(setFeedState);
    feed.start();
    fleet.load();
    return () => {
      off();
      feed.stop();
    };
  }, []);

  const role = session.role;
  const ctx = useMemo(() => ({ session, role, feed, fleet, toast, navigate }), [session]);
  const pages = PAGES.filter((p) => !p.role || can(role, p.role));
  const page = pages.find((p) => p.path === route.path);
  useEffect(() => {
    if (!page) navigate('map', {}, { replace: true });
  }, [page]);
  useEffect(() => {
    document.title = page ? `${page.title} · truckx` : 'truckx';
  }, [page]);

  const signOut = async () => {
    try {
      await api('DELETE', SESSION);
    } catch (err) {
      if (err.status !== 401) {
        toast(`Sign-out failed: ${err.message}`, 'error');
        return;
      }
    }
    feed.stop();
    onSignOut();
  };

  const Page = page ? page.component : null;
  return (
    <AppContext.Provider value={ctx}>
      <div class="shell">
        <header class="topbar">
          <a class="brand" href="#/map">
            <img src="/static/images/favicon.svg" alt="" width="24" height="24" />
            <span>truckx</span>
          </a>
          <nav class="nav">
            {pages.map((p) => (
              <a key={p.path} href={`#/${p.path}`} class={p === page ? 'active' : ''}>{p.title}</a>
            ))}
          </nav>
          <div class="topbar-right">
            <span class={`live live-${feedState}`} title="Events feed">
              <span class="live-dot" />
              {feedState === 'live' ? 'Live' : feedState === 'reconnecting' ? 'Reconnecting…' : humanize(feedState)}
            </span>
            <span class="user" title={`Signed in as ${session.username}`}>
              {session.username} <span class="role">{role}</span>
            </span>
            <button type="button" class="btn btn-ghost" onClick={signOut}>Sign out</button>
          </div>
        </header>
        <main class="main">{Page ? <Page key={route.path} params={route.params} /> : null}</main>
      </div>
    </AppContext.Provider>
  );
}

render(<App />, document.getElementById('app'));
