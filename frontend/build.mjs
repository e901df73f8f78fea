// The fleet console's one build command: `npm run build` (in frontend/).
//
// Bundles src/ with esbuild into truckx_server/static/ (index.html, app.js, app.css, images/) and
// writes LICENSES/ with the licence of every npm package that ends up in the bundle. The output is
// deterministic (no hashes, no timestamps), so a rebuild of unchanged sources changes no file.
// `npm run check` builds into a temporary directory and fails when the committed assets differ.
import * as esbuild from 'esbuild';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url));
const committed = path.resolve(here, '..', 'truckx_server', 'static');
const check = process.argv.includes('--check');
const outdir = check ? fs.mkdtempSync(path.join(os.tmpdir(), 'truckx-console-')) : committed;

// Leaflet's default marker icons, served from 'self' (L.Icon.Default.imagePath points here).
const LEAFLET_IMAGES = ['marker-icon.png', 'marker-icon-2x.png', 'marker-shadow.png', 'layers.png', 'layers-2x.png'];

// Leaflet blanks removed and cancelled tiles by pointing them at a data: GIF, which a CSP of
// `img-src 'self' <tile host>` refuses (one console error per tile). Point them at our own empty GIF.
const LEAFLET_EMPTY = "'data:image/gif;base64,R0lGODlhAQABAAD/ACwAAAAAAQABAAACADs='";
const leafletEmptyImage = {
  name: 'leaflet-empty-image',
  setup(b) {
    b.onLoad({ filter: /leaflet[\\/]dist[\\/]leaflet-src(\.esm)?\.js$/ }, (args) => {
      const src = fs.readFileSync(args.path, 'utf8');
      if (!src.includes(LEAFLET_EMPTY)) throw new Error(`${args.path}: Leaflet's emptyImageUrl changed; update build.mjs`);
      return { contents: src.replace(LEAFLET_EMPTY, "'/static/images/empty.gif'"), loader: 'js' };
    });
  },
};

function emptyDir(dir) {
  fs.rmSync(dir, { recursive: true, force: true });
  fs.mkdirSync(dir, { recursive: true });
}

function packageOf(file) {
  // node_modules/<name>/... or node_modules/@scope/<name>/...
  const parts = file.split('/');
  const i = parts.lastIndexOf('node_modules');
  if (i < 0) return null;
  return parts[i + 1].startsWith('@') ? `${parts[i + 1]}/${parts[i + 2]}` : parts[i + 1];
}

function licenceText(dir) {
  const name = fs.readdirSync(dir).find((f) => /^(licen[cs]e|copying)(\.(md|txt))?$/i.test(f));
  if (!name) throw new Error(`no licence file in ${dir}: refusing to vendor it without one`);
  return fs.readFileSync(path.join(dir, name), 'utf8');
}

async function build() {
  emptyDir(outdir);
  const result = await esbuild.build({
    absWorkingDir: here,
    entryPoints: { app: 'src/main.jsx' },
    bundle: true,
    minify: true,
    format: 'iife',
    target: ['chrome110', 'firefox110', 'safari16'],
    jsx: 'automatic',
    jsxImportSource: 'preact',
    outdir,
    assetNames: 'images/[name]',
    loader: { '.png': 'file', '.svg': 'file' },
    legalComments: 'none', // the licences are in LICENSES/ instead
    metafile: true,
    plugins: [leafletEmptyImage],
    logLevel: 'warning',
    define: { 'process.env.NODE_ENV': '"production"' },
  });

  // index.html: copied as is; {{TILE_URL}} stays for the server to fill in.
  fs.copyFileSync(path.join(here, 'src', 'index.html'), path.join(outdir, 'index.html'));
  fs.mkdirSync(path.join(outdir, 'images'), { recursive: true });
  for (const img of LEAFLET_IMAGES) {
    fs.copyFileSync(path.join(here, 'node_modules', 'leaflet', 'dist', 'images', img), path.join(outdir, 'images', img));
  }
  for (const img of fs.readdirSync(path.join(here, 'src', 'images'))) {
    fs.copyFileSync(path.join(here, 'src', 'images', img), path.join(outdir, 'images', img));
  }

  // Licences of every package whose code is in the bundle (from esbuild's metafile), plus Leaflet's
  // images (copied above).
  const packages = new Set(['leaflet']);
  for (const input of Object.keys(result.metafile.inputs)) {
    const pkg = packageOf(input);
    if (pkg) packages.add(pkg);
  }
  const licDir = path.join(outdir, 'LICENSES');
  fs.mkdirSync(licDir, { recursive: true });
  const lines = [
    'Third-party software in the truckx fleet console (truckx_server/static/)',
    '',
    'app.js and app.css bundle the npm packages below (with esbuild); images/marker-*.png and',
    'images/layers*.png are Leaflet\'s. Each package\'s full licence text is in the file named here.',
    '',
  ];
  for (const pkg of [...packages].sort()) {
    const dir = path.join(here, 'node_modules', pkg);
    const meta = JSON.parse(fs.readFileSync(path.join(dir, 'package.json'), 'utf8'));
    const file = `${pkg.replace('/', '__')}.txt`;
    fs.writeFileSync(path.join(licDir, file), licenceText(dir));
    const home = meta.homepage || (meta.repository && (meta.repository.url || meta.repository)) || '';
    lines.push(`${meta.name} ${meta.version}  licence: ${meta.license}  ${home}`.trimEnd());
    lines.push(`    full text: LICENSES/${file}`);
  }
  lines.push('', 'The console itself is part of truckx (Apache-2.0).', '');
  fs.writeFileSync(path.join(licDir, 'THIRD-PARTY-NOTICES.txt'), lines.join('\n'));
}

function listFiles(dir, base = dir) {
  return fs.readdirSync(dir, { withFileTypes: true }).flatMap((e) => {
    const p = path.join(dir, e.name);
    return e.isDirectory() ? listFiles(p, base) : [path.relative(base, p)];
  }).sort();
}

await build();
if (check) {
  const want = listFiles(outdir);
  const have = fs.existsSync(committed) ? listFiles(committed) : [];
  const differ = [...new Set([...want, ...have])].filter((f) => !want.includes(f) || !have.includes(f)
    || !fs.readFileSync(path.join(outdir, f)).equals(fs.readFileSync(path.join(committed, f))));
  fs.rmSync(outdir, { recursive: true, force: true });
  if (differ.length) {
    console.error(`truckx_server/static/ is not the build of frontend/src: ${differ.join(', ')}\nrun: npm run build`);
    process.exit(1);
  }
  console.log('truckx_server/static/ matches the sources');
} else {
  for (const f of listFiles(outdir)) console.log(`${path.join('truckx_server/static', f)}  ${fs.statSync(path.join(outdir, f)).size} B`);
}
