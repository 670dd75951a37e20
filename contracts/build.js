// Compiles src/*.sol with the pinned solc (wasm, from npm) into build/<Contract>.json
// in payments/evm/artifacts/ (abi, bytecode, deployedBytecode, compiler, settings; shipped with the package). `node build.js --check` compiles
// again and fails if the committed artifacts differ (CI runs it): the daemon and the Python
// tests use the committed artifacts and never need Node.
"use strict";
const fs = require("fs");
const path = require("path");
const solc = require("solc");

const here = __dirname;
const srcDir = path.join(here, "src");
const outDir = path.join(here, "..", "payments", "evm", "artifacts");
const check = process.argv.includes("--check");

const settings = {
  optimizer: { enabled: true, runs: 200 },
  evmVersion: "cancun",
  outputSelection: { "*": { "*": ["abi", "evm.bytecode.object", "evm.deployedBytecode.object"] } },
};
const sources = {};
for (const name of fs.readdirSync(srcDir).filter((n) => n.endsWith(".sol")).sort()) {
  sources[name] = { content: fs.readFileSync(path.join(srcDir, name), "utf8") };
}
function findImports(importPath) {
  const file = path.join(here, "node_modules", importPath);
  if (!file.startsWith(path.join(here, "node_modules") + path.sep) || !fs.existsSync(file)) {
    return { error: `import not found: ${importPath}` };
  }
  return { contents: fs.readFileSync(file, "utf8") };
}
const output = JSON.parse(
  solc.compile(JSON.stringify({ language: "Solidity", sources, settings }), { import: findImports }),
);
const errors = (output.errors || []).filter((e) => e.severity === "error");
for (const e of output.errors || []) console.error(e.formattedMessage);
if (errors.length) process.exit(1);

let differ = 0;
fs.mkdirSync(outDir, { recursive: true });
for (const file of Object.keys(sources)) {
  for (const [name, c] of Object.entries(output.contracts[file])) {
    const artifact = {
      contractName: name,
      compiler: `solc ${solc.version()}`,
      settings: { optimizer: settings.optimizer, evmVersion: settings.evmVersion },
      abi: c.abi,
      bytecode: "0x" + c.evm.bytecode.object,
      deployedBytecode: "0x" + c.evm.deployedBytecode.object,
    };
    const text = JSON.stringify(artifact, null, 1) + "\n";
    const target = path.join(outDir, `${name}.json`);
    if (check) {
      const old = fs.existsSync(target) ? fs.readFileSync(target, "utf8") : "";
      if (old !== text) {
        console.error(`${path.relative(here, target)} differs from a fresh build: run \`make contracts\` and commit it`);
        differ += 1;
      }
    } else {
      fs.writeFileSync(target, text);
      console.log(`wrote ${path.relative(here, target)} (${c.evm.deployedBytecode.object.length / 2} bytes deployed)`);
    }
  }
}
if (check) console.log(differ ? `${differ} artifact(s) differ` : "artifacts match a fresh build");
process.exit(differ ? 1 : 0);
