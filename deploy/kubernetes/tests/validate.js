'use strict';
// Renders deploy/kubernetes's kustomizations with `kubectl kustomize` and checks each offline:
//  1. against the Kubernetes API's JSON schemas (kubernetes-models, generated from the
//     Kubernetes OpenAPI spec; KEDA's ScaledObject from KEDA's CRD), and
//  2. against vial's own policy, what no schema says (non-root, read-only root, seccomp, the
//     grace arithmetic, probes by `vial ping`, selectors matching the pods, one autoscaler on a
//     metric vial serves, no Secret committed...).
// Then every fixture under tests/fixtures (a kustomization that breaks one thing, its first line
// `# expect: TEXT`) must be REJECTED with an error containing TEXT: each check is shown to fail
// when it should. The liveness probe's command is run against each of vial ping's exit statuses
// (with a stand-in `vial` that only exits so). The metric names the autoscalers may use come
// from a real `vial serve --metrics` scrape.
//
// Usage: node validate.js --kubectl KUBECTL --vial VIAL --manifests deploy/kubernetes
// (NODE_PATH = the node_modules that `npm ci` made in the build tree: deploy.npm_ci).
const assert = require('assert');
const fs = require('fs');
const os = require('os');
const path = require('path');
const { spawn, spawnSync } = require('child_process');
const YAML = require('yaml');

function parseArgs(argv) {
  const args = {};
  for (let i = 0; i < argv.length; i += 2) {
    assert(argv[i].startsWith('--') && i + 1 < argv.length, `usage: ${argv[i]} needs a value`);
    args[argv[i].slice(2)] = argv[i + 1];
  }
  for (const need of ['kubectl', 'vial', 'manifests'])
    assert(args[need], `usage: node validate.js --kubectl K --vial V --manifests DIR (no --${need})`);
  return args;
}

// --- rendering -------------------------------------------------------------------------------

function render(kubectl, dir) {
  const result = spawnSync(kubectl, ['kustomize', dir], { encoding: 'utf8', timeout: 60000 });
  if (result.error) throw new Error(`${kubectl} kustomize ${dir}: ${result.error.message}`);
  if (result.status !== 0)
    throw new Error(`${kubectl} kustomize ${dir} exited ${result.status}: ${result.stderr}`);
  return YAML.parseAllDocuments(result.stdout).map((doc) => {
    if (doc.errors.length) throw new Error(`${dir}: rendered YAML does not parse: ${doc.errors}`);
    return doc.toJS();
  }).filter((doc) => doc !== null);
}

// --- 1. the API's schemas --------------------------------------------------------------------

// apiVersion -> the module holding its kinds' models.
function modelModule(apiVersion) {
  if (apiVersion.startsWith('keda.sh/')) return `@kubernetes-models/keda/${apiVersion}`;
  return `kubernetes-models/${apiVersion}`;  // "v1" (core) or "group/version"
}

function schemaErrors(docs) {
  const errors = [];
  for (const doc of docs) {
    const what = `${doc.kind} ${doc.metadata && doc.metadata.name}`;
    let Model;
    try {
      Model = require(modelModule(doc.apiVersion))[doc.kind];
    } catch (e) {
      Model = undefined;
    }
    // An object of an API the validator does not know is an error: it would go unchecked.
    if (!Model) {
      errors.push(`schema: ${what}: no schema for apiVersion ${doc.apiVersion} kind ${doc.kind}`);
      continue;
    }
    try {
      new Model(doc).validate();
    } catch (e) {
      errors.push(`schema: ${what}: ${e.message}`);
    }
  }
  return errors;
}

// --- 2. vial's policy ------------------------------------------------------------------------

// Every key of `selector` is in `labels` with the same value (and there is at least one).
function selects(selector, labels) {
  const keys = Object.keys(selector || {});
  return keys.length > 0 && keys.every((k) => labels[k] === selector[k]);
}

// The value after `name` in an argument list, or undefined.
function option(args, name) {
  const i = args.indexOf(name);
  return i >= 0 ? args[i + 1] : undefined;
}

function portOf(address) {
  return Number(address.slice(address.lastIndexOf(':') + 1));
}

// Secret file modes: nothing for others, no write or execute bits (kubelet adds group read
// itself when fsGroup is set).
function privateMode(mode) {
  return mode !== undefined && (mode & 0o337) === 0;
}

function policyErrors(docs, servedMetrics) {
  const errors = [];
  const fail = (text) => errors.push(`policy: ${text}`);
  const ofKind = (kind) => docs.filter((d) => d.kind === kind);

  for (const secret of ofKind('Secret'))
    fail(`Secret ${secret.metadata.name} is in the manifests: secrets are created by hand ` +
         '(deploy/kubernetes/README.md), never committed');
  const namespaces = new Set(docs.filter((d) => d.kind !== 'Namespace')
    .map((d) => d.metadata.namespace));
  if (namespaces.size !== 1 || namespaces.has(undefined))
    fail(`objects must share one namespace, found ${[...namespaces].join(', ')}`);

  const deployments = ofKind('Deployment');
  if (deployments.length !== 1) {
    fail(`expected one Deployment, found ${deployments.length}`);
    return errors;
  }
  const deployment = deployments[0];
  const pod = deployment.spec.template.spec;
  const podLabels = deployment.spec.template.metadata.labels || {};
  if (!selects(deployment.spec.selector.matchLabels, podLabels))
    fail('the Deployment\'s selector does not select its own pod template\'s labels');
  for (const key of ['hostNetwork', 'hostPID', 'hostIPC'])
    if (pod[key]) fail(`the pod sets ${key}`);

  const serve = pod.containers.find((c) => (c.command || []).slice(0, 2).join(' ') === 'vial serve');
  if (!serve) {
    fail('no container runs `vial serve`');
    return errors;
  }
  const args = serve.command;
  const sandboxed = args.includes('--sandbox');
  const podSecurity = pod.securityContext || {};

  // Identity and confinement, for every container (init containers too).
  for (const c of [...(pod.initContainers || []), ...pod.containers]) {
    const sc = c.securityContext || {};
    const where = `container ${c.name}`;
    if ((sc.runAsNonRoot ?? podSecurity.runAsNonRoot) !== true)
      fail(`${where}: runAsNonRoot is not true`);
    if ((sc.runAsUser ?? podSecurity.runAsUser) === 0) fail(`${where}: runAsUser is 0`);
    if (sc.readOnlyRootFilesystem !== true) fail(`${where}: readOnlyRootFilesystem is not true`);
    if (sc.allowPrivilegeEscalation !== false)
      fail(`${where}: allowPrivilegeEscalation is not false`);
    if (sc.privileged) fail(`${where}: privileged`);
    const caps = sc.capabilities || {};
    if (!(caps.drop || []).includes('ALL')) fail(`${where}: capabilities do not drop ALL`);
    if ((caps.add || []).length) fail(`${where}: adds capabilities ${caps.add}`);
    const seccomp = (sc.seccompProfile || podSecurity.seccompProfile || {}).type;
    // Unconfined only where vial serve --sandbox needs it (deploy/kubernetes/sandbox says why).
    if (!(seccomp === 'RuntimeDefault' || seccomp === 'Localhost' ||
          (seccomp === 'Unconfined' && sandboxed)))
      fail(`${where}: seccompProfile is ${seccomp || 'unset'}, not RuntimeDefault` +
           (seccomp === 'Unconfined' ? ' (Unconfined is for vial serve --sandbox only)' : ''));
    const resources = c.resources || {};
    for (const kind of ['requests', 'limits'])
      for (const what of ['cpu', 'memory'])
        if (!(resources[kind] || {})[what]) fail(`${where}: no ${kind}.${what}`);
  }

  // The grace arithmetic: the kubelet SIGKILLs terminationGracePeriodSeconds after SIGTERM.
  const grace = Number(option(args, '--grace') ?? 5);
  const timeoutText = option(args, '--timeout') ?? (sandboxed ? '10' : undefined);
  const period = pod.terminationGracePeriodSeconds ?? 30;
  if (timeoutText === undefined) {
    fail('vial serve has no --timeout: a call could run past any grace period');
  } else {
    const timeout = Number(timeoutText);
    if (period < grace + timeout)
      fail(`terminationGracePeriodSeconds ${period} < --grace ${grace} + --timeout ${timeout}`);
    if (grace < timeout)
      fail(`--grace ${grace} < --timeout ${timeout}: a drain would cancel calls still running`);
  }

  // Listening: TLS on the pod's interfaces, metrics where Prometheus is told to look.
  const listen = option(args, '--listen') || '';
  if (!listen.startsWith('tls:')) fail(`vial serve listens on '${listen}', not tls:`);
  const port = portOf(listen);
  const metrics = option(args, '--metrics') || '';
  const metricsPort = metrics ? portOf(metrics) : undefined;
  if (!metrics) fail('vial serve has no --metrics: nothing to autoscale on');
  const containerPorts = new Map((serve.ports || []).map((p) => [p.name, p.containerPort]));
  if (![...containerPorts.values()].includes(port)) fail(`port ${port} is not a container port`);
  if (metrics && ![...containerPorts.values()].includes(metricsPort))
    fail(`metrics port ${metricsPort} is not a container port`);

  // Probes: vial ping, through this pod's own listener, with the server's token.
  const token = option(args, '--token-file');
  const pingOf = (probe, name) => {
    const command = ((probe || {}).exec || {}).command;
    if (!command) {
      fail(`no ${name} probe running vial ping (exec)`);
      return;
    }
    const text = command.join(' ');
    if (!/(^|[\s;])vial ping /.test(text)) fail(`the ${name} probe does not run vial ping`);
    if (!text.includes(`--connect tls:localhost:${port}`))
      fail(`the ${name} probe does not connect to tls:localhost:${port} (this pod's listener)`);
    if (!text.includes(`--token-file ${token}`))
      fail(`the ${name} probe does not use the server's --token-file ${token}`);
    if (!text.includes('--tls-ca ')) fail(`the ${name} probe gives no --tls-ca`);
    return command;
  };
  const readiness = pingOf(serve.readinessProbe, 'readiness');
  // Readiness is vial ping itself, so its exit status decides: 5 (draining) = not ready.
  if (readiness && readiness.slice(0, 2).join(' ') !== 'vial ping')
    fail('the readiness probe must run vial ping directly (its exit status is the verdict)');
  const liveness = pingOf(serve.livenessProbe, 'liveness');
  if (liveness) {
    const verdicts = livenessVerdicts(liveness);
    if (verdicts[5] !== 'alive')
      fail('the liveness probe fails while vial drains (vial ping exit 5): the kubelet would ' +
           'restart a pod finishing its calls');
    if (verdicts[0] !== 'alive') fail('the liveness probe fails when vial ping answers (exit 0)');
    if (verdicts[4] !== 'dead' || verdicts[2] !== 'dead')
      fail('the liveness probe passes when vial ping gets no answer (exit 4) or is misused (2)');
  }

  // Secrets: the certificate and key from a Secret volume mounted read-only with a private mode;
  // the token from a Secret, copied into a memory-backed emptyDir (server/token.cpp wants the
  // serving user's own 0600 file, which no Secret volume gives).
  const volumes = new Map((pod.volumes || []).map((v) => [v.name, v]));
  const mountOf = (container, file) => (container.volumeMounts || [])
    .filter((m) => file && file.startsWith(m.mountPath.replace(/\/?$/, '/')))
    .sort((a, b) => b.mountPath.length - a.mountPath.length)[0];
  for (const flag of ['--tls-cert', '--tls-key']) {
    const file = option(args, flag);
    const mount = mountOf(serve, file);
    const volume = mount && volumes.get(mount.name);
    if (!volume || !volume.secret) fail(`${flag} ${file} is not on a Secret volume`);
    else {
      if (!mount.readOnly) fail(`${flag} ${file}: its Secret volume is not mounted readOnly`);
      if (!privateMode(volume.secret.defaultMode))
        fail(`${flag} ${file}: Secret volume defaultMode ` +
             `${(volume.secret.defaultMode ?? 0o644).toString(8)} is not private (0400/0440)`);
    }
  }
  const tokenMount = mountOf(serve, token);
  const tokenVolume = tokenMount && volumes.get(tokenMount.name);
  if (!tokenVolume || !tokenVolume.emptyDir || tokenVolume.emptyDir.medium !== 'Memory')
    fail(`--token-file ${token} is not in a memory-backed emptyDir filled from a Secret`);
  else {
    const copier = (pod.initContainers || []).find((c) => (c.volumeMounts || [])
      .some((m) => m.name === tokenMount.name));
    const source = copier && (copier.volumeMounts || []).map((m) => volumes.get(m.name))
      .find((v) => v && v.secret);
    if (!copier || !source) fail(`no init container copies the token from a Secret into ${token}`);
    else {
      if (!/\binstall\b.*-m 0?600/.test(copier.command.join(' ')))
        fail('the token\'s init container does not install it with mode 0600');
      if (!privateMode(source.secret.defaultMode))
        fail('the token\'s Secret volume defaultMode is not private (0400/0440)');
    }
  }

  // The headless Service: one A record per ready pod, for clients to balance over.
  const services = ofKind('Service').filter((s) => selects(s.spec.selector, podLabels));
  if (services.length !== 1)
    fail(`expected one Service selecting the vial pods, found ${services.length}`);
  for (const service of services) {
    if (service.spec.clusterIP !== 'None')
      fail(`Service ${service.metadata.name} is not headless (clusterIP: None)`);
    if (service.spec.publishNotReadyAddresses)
      fail(`Service ${service.metadata.name} publishes pods that are not ready (draining)`);
    for (const p of service.spec.ports || [])
      if (!containerPorts.has(p.targetPort) && ![...containerPorts.values()].includes(p.targetPort))
        fail(`Service port ${p.name} targets ${p.targetPort}, not a port of the vial container`);
  }

  const pdbs = ofKind('PodDisruptionBudget');
  if (pdbs.length !== 1) fail(`expected one PodDisruptionBudget, found ${pdbs.length}`);
  for (const pdb of pdbs) {
    if (!selects(pdb.spec.selector && pdb.spec.selector.matchLabels, podLabels))
      fail(`PodDisruptionBudget ${pdb.metadata.name} does not select the vial pods`);
    if (pdb.spec.maxUnavailable === 0 || pdb.spec.minAvailable === undefined &&
        pdb.spec.maxUnavailable === undefined)
      fail(`PodDisruptionBudget ${pdb.metadata.name} lets no pod be evicted (or says nothing)`);
  }

  const policies = ofKind('NetworkPolicy');
  if (policies.length !== 1) fail(`expected one NetworkPolicy, found ${policies.length}`);
  for (const policy of policies) {
    const name = `NetworkPolicy ${policy.metadata.name}`;
    if (!selects(policy.spec.podSelector.matchLabels, podLabels))
      fail(`${name} does not select the vial pods`);
    if (!(policy.spec.policyTypes || []).includes('Ingress')) fail(`${name} has no Ingress type`);
    const open = new Map();
    for (const rule of policy.spec.ingress || []) {
      if (!(rule.from || []).length) fail(`${name}: a rule admits every source`);
      if (!(rule.ports || []).length) fail(`${name}: a rule admits every port`);
      for (const p of rule.ports || []) open.set(p.port, rule.from || []);
    }
    const service = open.get(port) || [];
    if (!service.length || !service.every((f) => f.podSelector &&
        (f.podSelector.matchLabels || {})['vial-client'] === 'true'))
      fail(`${name}: port ${port} must admit only pods labelled vial-client: "true"`);
    if (metrics && !open.has(metricsPort)) fail(`${name}: metrics port ${metricsPort} is closed`);
    for (const p of open.keys())
      if (p !== port && p !== metricsPort) fail(`${name}: opens port ${p}, which vial does not serve`);
  }

  // Exactly one autoscaler, on the Deployment, on metrics vial serves.
  const hpas = ofKind('HorizontalPodAutoscaler');
  const scaledObjects = ofKind('ScaledObject');
  if (hpas.length + scaledObjects.length !== 1)
    fail(`expected exactly one autoscaler, found ${hpas.length} HorizontalPodAutoscaler and ` +
         `${scaledObjects.length} ScaledObject: two would fight over the replicas`);
  const served = (name) => servedMetrics.has(name);
  for (const hpa of hpas) {
    const target = hpa.spec.scaleTargetRef;
    if (hpa.apiVersion !== 'autoscaling/v2') fail(`HPA ${hpa.metadata.name} is not autoscaling/v2`);
    if (target.apiVersion !== 'apps/v1' || target.kind !== 'Deployment' ||
        target.name !== deployment.metadata.name)
      fail(`HPA ${hpa.metadata.name} targets ${target.kind} ${target.name}, not the Deployment`);
    for (const metric of hpa.spec.metrics || []) {
      const name = metric.type === 'Pods' ? metric.pods.metric.name : undefined;
      if (!name || !served(name))
        fail(`HPA ${hpa.metadata.name} scales on ${name || metric.type}, which vial serve's ` +
             '/metrics does not serve');
    }
  }
  for (const so of scaledObjects) {
    const target = so.spec.scaleTargetRef;
    if ((target.kind || 'Deployment') !== 'Deployment' || target.name !== deployment.metadata.name)
      fail(`ScaledObject ${so.metadata.name} does not target the Deployment`);
    for (const trigger of so.spec.triggers || []) {
      const names = ((trigger.metadata || {}).query || '').match(/\bvial_[a-z_]+/g) || [];
      if (trigger.type !== 'prometheus' || !names.length || !names.every(served))
        fail(`ScaledObject ${so.metadata.name}'s trigger queries ${names.join(', ') || 'nothing'}` +
             ', not metrics vial serve\'s /metrics serves');
    }
  }
  return errors;
}

// --- the metric names vial serves ------------------------------------------------------------

// Starts a real `vial serve` (private unix socket in a temporary directory, metrics on a free
// loopback port), scrapes /metrics once and stops it.
async function servedMetricNames(vial) {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'vial-deploy-'));
  fs.chmodSync(dir, 0o700);
  const server = spawn(vial, ['serve', '--listen', `unix:${dir}/vial.sock`, '--workers', '1',
    '--metrics', 'tcp:127.0.0.1:0'], { stdio: ['ignore', 'ignore', 'pipe'] });
  let log = '';
  try {
    const url = await new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`vial serve did not say where its metrics are within 20 s:\n${log}`)), 20000);
      server.stderr.on('data', (chunk) => {
        log += chunk;
        const found = /metrics at (http:\/\/\S+)/.exec(log);
        if (found) {
          clearTimeout(timer);
          resolve(found[1]);
        }
      });
      server.on('exit', (code) => reject(new Error(`vial serve exited ${code}:\n${log}`)));
    });
    const response = await fetch(url, { signal: AbortSignal.timeout(10000) });
    const text = await response.text();
    return new Set(text.split('\n').filter((l) => l.startsWith('# TYPE '))
      .map((l) => l.split(' ')[2]));
  } finally {
    server.kill('SIGKILL');
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

// --- the liveness wrapper ---------------------------------------------------------------------

// Runs the liveness probe's command with a `vial` that exits with each of vial ping's statuses
// (0 answered, 5 draining, 4 unreachable, 2 a usage error): alive for 0 and 5 only.
function livenessVerdicts(livenessCommand) {
  const bin = fs.mkdtempSync(path.join(os.tmpdir(), 'vial-probe-'));
  fs.writeFileSync(path.join(bin, 'vial'), '#!/bin/sh\nexit "$FAKE_PING_STATUS"\n', { mode: 0o755 });
  try {
    const verdicts = {};
    for (const status of [0, 5, 4, 2]) {
      const run = spawnSync(livenessCommand[0], livenessCommand.slice(1), {
        env: { PATH: `${bin}:/usr/bin:/bin`, FAKE_PING_STATUS: String(status) }, timeout: 10000,
      });
      verdicts[status] = run.status === 0 ? 'alive' : 'dead';
    }
    return verdicts;
  } finally {
    fs.rmSync(bin, { recursive: true, force: true });
  }
}

// --- main ------------------------------------------------------------------------------------

async function main() {
  const args = parseArgs(process.argv.slice(2));
  const root = path.resolve(args.manifests);
  let passed = 0;
  let failed = 0;
  const check = (ok, text) => {
    console.log(`${ok ? 'ok  ' : 'FAIL'} ${text}`);
    ok ? passed++ : failed++;
  };

  const metrics = await servedMetricNames(args.vial);
  console.log(`vial serve's /metrics serves ${metrics.size} metrics`);

  // The shipped kustomizations: each renders and passes both kinds of check.
  for (const dir of ['.', 'keda', 'sandbox']) {
    const docs = render(args.kubectl, path.join(root, dir));
    const errors = [...schemaErrors(docs), ...policyErrors(docs, metrics)];
    check(errors.length === 0, `deploy/kubernetes/${dir === '.' ? '' : dir} renders ` +
      `${docs.length} objects (${docs.map((d) => d.kind).join(', ')}) and passes` +
      (errors.length ? `:\n    ${errors.join('\n    ')}` : ''));
    if (dir === '.') {
      const serve = docs.find((d) => d.kind === 'Deployment').spec.template.spec.containers[0];
      const verdicts = livenessVerdicts(serve.livenessProbe.exec.command);
      console.log(`     liveness wrapper: vial ping exit 0 -> ${verdicts[0]}, 5 (draining) -> ` +
        `${verdicts[5]}, 4 (no answer) -> ${verdicts[4]}, 2 (usage) -> ${verdicts[2]}`);
    }
  }

  // The fixtures: each must be rejected, by the check its first line names.
  const fixtures = path.join(root, 'tests', 'fixtures');
  for (const name of fs.readdirSync(fixtures).sort()) {
    const kustomization = fs.readFileSync(path.join(fixtures, name, 'kustomization.yaml'), 'utf8');
    const expect = /^# expect: (.*)$/m.exec(kustomization);
    assert(expect, `fixture ${name}: its kustomization.yaml has no "# expect: TEXT" line`);
    const docs = render(args.kubectl, path.join(fixtures, name));
    const errors = [...schemaErrors(docs), ...policyErrors(docs, metrics)];
    const hit = errors.find((e) => e.includes(expect[1]));
    check(hit !== undefined, `fixture ${name} is rejected: ` + (hit ||
      `expected an error containing "${expect[1]}", got ${errors.length ? errors.join('; ') : 'none'}`));
  }

  console.log(`${passed} passed, ${failed} failed`);
  process.exitCode = failed ? 1 : 0;
}

main().catch((e) => {
  console.error(`validate.js: ${e.stack || e}`);
  process.exitCode = 1;
});
