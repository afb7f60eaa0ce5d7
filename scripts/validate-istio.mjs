#!/usr/bin/env node
// Validate Istio manifests offline, and the other custom resources the Helm chart renders
// (Traefik's IngressRoute/Middleware, the Prometheus Operator's ServiceMonitor and
// PrometheusRule, KEDA's ScaledObject and TriggerAuthentication).
//
//   node scripts/validate-istio.mjs [--ignore-other-kinds] [FILE_OR_DIR|- ...]
//
// FILE_OR_DIR: YAML files (multi-document, e.g. `helm template` output) or directories of
// them; `-` reads standard input. Every YAML document must be a kind of a known group:
//   *.istio.io (security, networking, telemetry, extensions)  @kubernetes-models/istio
//   traefik.io                                               @kubernetes-models/traefik
//   monitoring.coreos.com                                    @kubernetes-models/prometheus-operator
//   keda.sh                                                  @kubernetes-models/keda
// unless --ignore-other-kinds (rendered charts: core kinds are kubernetes-validate's), and must:
//   1. pass the CRD schema of its model package (enums, required fields, types), and
//   2. use only known fields: each key is looked up in the package's TypeScript interface for
//      its kind (through the TypeScript compiler API), so a misspelt or misplaced field, which
//      the schema alone lets through, fails with its path.
// Istio documents must also carry metadata.name and metadata.namespace (some of the chart's go
// to the gateway's namespace); the others metadata.name.
//
// Dependencies live outside the repository, in $FLICK_TOOLS_DIR/istio-validate (default
// /var/cache/flick/tools/istio-validate); scripts/check-deploy.sh installs them:
//   @kubernetes-models/istio@3.0.1, @kubernetes-models/traefik@2.0.0,
//   @kubernetes-models/prometheus-operator@6.0.0, @kubernetes-models/keda@2.0.0, js-yaml@4.1.0,
//   typescript@5.9.3
// Prints one summary line (documents and kinds validated, others ignored); exits 0 when every
// document is valid, 1 otherwise.

import fs from "node:fs";
import path from "node:path";
import { createRequire } from "node:module";
import { pathToFileURL } from "node:url";

const toolsDir = process.env.FLICK_TOOLS_DIR || "/var/cache/flick/tools";
const depsDir = path.join(toolsDir, "istio-validate");
const require = createRequire(path.join(depsDir, "package.json"));
const modelsRoot = path.join(depsDir, "node_modules", "@kubernetes-models");
// API group (matched by the test) → model package directory
const packages = [
  { test: (g) => /\.istio\.io$/.test(g), dir: path.join(modelsRoot, "istio"), needsNamespace: true },
  { test: (g) => g === "traefik.io", dir: path.join(modelsRoot, "traefik"), needsNamespace: false },
  { test: (g) => g === "monitoring.coreos.com", dir: path.join(modelsRoot, "prometheus-operator"), needsNamespace: false },
  { test: (g) => g === "keda.sh", dir: path.join(modelsRoot, "keda"), needsNamespace: false },
];

function fail(message) {
  console.error(`validate-istio: ${message}`);
  process.exit(1);
}

for (const { dir } of packages) {
  if (!fs.existsSync(path.join(dir, "package.json"))) {
    fail(`missing ${dir}; run scripts/check-deploy.sh to install the validators`);
  }
}
const yaml = require("js-yaml");
const ts = require("typescript");

// ---------------------------------------------------------------------------------------------
// Collect documents
// ---------------------------------------------------------------------------------------------
function yamlFiles(target) {
  if (target === "-") return [target];
  if (!fs.existsSync(target)) fail(`no such file or directory: ${target}`);
  const stat = fs.statSync(target);
  if (stat.isFile()) return [target];
  return fs
    .readdirSync(target)
    .filter((f) => /\.ya?ml$/.test(f))
    .sort()
    .map((f) => path.join(target, f));
}

const args = process.argv.slice(2);
const ignoreOthers = args.includes("--ignore-other-kinds");
const targets = args.filter((a) => a !== "--ignore-other-kinds");
if (targets.length === 0) fail("usage: validate-istio.mjs [--ignore-other-kinds] FILE_OR_DIR|- ...");
const files = targets.flatMap(yamlFiles);
if (files.length === 0) fail("no YAML files found");
const ignored = {}; // kind -> count (--ignore-other-kinds)

const docs = []; // { file, index, doc }
const errors = [];
for (const file of files) {
  let parsed;
  try {
    parsed = yaml.loadAll(fs.readFileSync(file === "-" ? 0 : file, "utf8"));
  } catch (e) {
    errors.push(`${file}: YAML: ${e.message.split("\n")[0]}`);
    continue;
  }
  parsed.forEach((doc, index) => {
    if (doc !== null && doc !== undefined) docs.push({ file, index, doc });
  });
}

const where = ({ file, index, doc }) =>
  `${file}#${index} ${doc?.kind ?? "?"}/${doc?.metadata?.name ?? "?"}`;

// ---------------------------------------------------------------------------------------------
// 1. Schema validation with the CRD models
// ---------------------------------------------------------------------------------------------
function packageOf(doc) {
  const [group, version] = String(doc.apiVersion ?? "").split("/");
  if (!group || !version) return null;
  return packages.find((p) => p.test(group)) ?? null;
}

function modelPath(doc) {
  const pkg = packageOf(doc);
  if (!pkg) return null;
  const [group, version] = String(doc.apiVersion).split("/");
  const p = path.join(pkg.dir, group, version, `${doc.kind}.js`);
  return fs.existsSync(p) ? p : null;
}

const typed = []; // documents that passed step 1, for step 2
for (const entry of docs) {
  const { doc } = entry;
  if (typeof doc !== "object" || Array.isArray(doc)) {
    errors.push(`${where(entry)}: not a mapping`);
    continue;
  }
  if (ignoreOthers && !packageOf(doc)) {
    ignored[doc.kind] = (ignored[doc.kind] ?? 0) + 1;
    continue;
  }
  const mp = modelPath(doc);
  if (!mp) {
    errors.push(`${where(entry)}: unknown apiVersion/kind ${doc.apiVersion} ${doc.kind}`);
    continue;
  }
  if (!doc.metadata?.name) errors.push(`${where(entry)}: metadata.name is required`);
  if (packageOf(doc).needsNamespace && !doc.metadata?.namespace) {
    errors.push(`${where(entry)}: metadata.namespace is required`);
  }
  const mod = await import(pathToFileURL(mp).href);
  const Model = mod[doc.kind];
  try {
    new Model(doc).validate();
  } catch (e) {
    errors.push(`${where(entry)}: schema: ${e.message}`);
    continue;
  }
  typed.push({ ...entry, modelPath: mp });
}

// ---------------------------------------------------------------------------------------------
// 2. Unknown fields: walk each document along its kind's TypeScript interface
// ---------------------------------------------------------------------------------------------
// The compiled schema validators accept unknown properties, and TypeScript's own excess-property
// check gives up inside the intersections/unions that model oneOf. So the document is walked
// key by key: at every object, the known keys are the properties of any constituent of the
// interface type at that path; a key that none declares (and no index signature allows) fails.
if (typed.length) {
  const virtualFile = path.join(depsDir, "__flick_istio_check__.ts");
  const kinds = [...new Set(typed.map((e) => e.modelPath))];
  const source =
    kinds
      .map((mp, i) => {
        const kind = path.basename(mp, ".js");
        return `import type { I${kind} as T${i} } from ${JSON.stringify(mp)};\nexport declare const k${i}: T${i};`;
      })
      .join("\n") + "\n";

  const options = {
    strict: true,
    noEmit: true,
    skipLibCheck: true,
    target: ts.ScriptTarget.ES2022,
    module: ts.ModuleKind.ESNext,
    moduleResolution: ts.ModuleResolutionKind.Bundler,
    lib: ["lib.es2022.d.ts"],
    types: [],
  };
  const host = ts.createCompilerHost(options);
  const readFile = host.readFile.bind(host);
  const fileExists = host.fileExists.bind(host);
  const getSourceFile = host.getSourceFile.bind(host);
  const isVirtual = (f) => path.resolve(f) === virtualFile;
  host.readFile = (f) => (isVirtual(f) ? source : readFile(f));
  host.fileExists = (f) => isVirtual(f) || fileExists(f);
  host.getSourceFile = (f, lang, ...rest) =>
    isVirtual(f) ? ts.createSourceFile(f, source, lang, true) : getSourceFile(f, lang, ...rest);

  const program = ts.createProgram([virtualFile], options, host);
  for (const d of ts.getPreEmitDiagnostics(program)) {
    errors.push(`typescript: ${ts.flattenDiagnosticMessageText(d.messageText, " ")}`);
  }
  const checker = program.getTypeChecker();
  const sf = program.getSourceFile(virtualFile);
  const rootTypes = new Map(); // modelPath -> ts.Type
  for (const stmt of sf.statements) {
    if (!ts.isVariableStatement(stmt)) continue;
    const decl = stmt.declarationList.declarations[0];
    const i = Number(decl.name.text.slice(1));
    rootTypes.set(kinds[i], checker.getTypeAtLocation(decl.name));
  }

  const constituents = (types) => {
    const out = [];
    const visit = (t) => {
      if (t.isUnion() || t.isIntersection()) t.types.forEach(visit);
      else out.push(t);
    };
    types.forEach((t) => visit(checker.getNonNullableType(t)));
    return out;
  };
  const isAny = (t) => (t.flags & ts.TypeFlags.Any) !== 0 || (t.flags & ts.TypeFlags.Unknown) !== 0;

  function walk(value, types, at, entry) {
    if (value === null || typeof value !== "object") return;
    const parts = constituents(types);
    if (parts.length === 0 || parts.some(isAny)) return; // nothing to check against
    if (Array.isArray(value)) {
      const elems = parts.filter((t) => checker.isArrayType(t)).map((t) => checker.getTypeArguments(t)[0]);
      if (elems.length) value.forEach((v, i) => walk(v, elems, `${at}[${i}]`, entry));
      return;
    }
    const indexTypes = parts.map((t) => checker.getIndexTypeOfType(t, ts.IndexKind.String)).filter(Boolean);
    for (const [key, child] of Object.entries(value)) {
      const propTypes = [];
      for (const t of parts) {
        const prop = checker.getPropertyOfType(t, key);
        if (prop) propTypes.push(checker.getTypeOfSymbol(prop));
      }
      if (propTypes.length === 0 && indexTypes.length === 0) {
        errors.push(`${where(entry)}: unknown field ${at ? `${at}.` : ""}${key}`);
        continue;
      }
      walk(child, propTypes.length ? propTypes : indexTypes, at ? `${at}.${key}` : key, entry);
    }
  }

  for (const entry of typed) {
    const root = rootTypes.get(entry.modelPath);
    if (!root || isAny(root) || checker.getPropertiesOfType(root).length === 0) {
      errors.push(`${where(entry)}: could not load the TypeScript interface of ${entry.doc.kind}`);
      continue;
    }
    walk(entry.doc, [root], "", entry);
  }
}

// ---------------------------------------------------------------------------------------------
if (errors.length) {
  for (const e of errors) console.error(`FAIL ${e}`);
  console.error(`validate-istio: ${errors.length} error(s) in ${docs.length} document(s)`);
  process.exit(1);
}
const kinds = {};
for (const { doc } of typed) kinds[doc.kind] = (kinds[doc.kind] ?? 0) + 1;
const summary = (counts) =>
  Object.entries(counts)
    .sort()
    .map(([k, n]) => `${n} ${k}`)
    .join(", ");
const others = Object.keys(ignored).length ? `; ignored: ${summary(ignored)}` : "";
console.log(`validate-istio: ${typed.length} documents valid (${summary(kinds) || "none"})${others}`);
