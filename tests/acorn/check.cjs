// Parses a workflow script on stdin with acorn, the way Claude Code's Workflow
// tool does (a module, top-level await and return allowed), and checks what
// orch-emit promises: the first statement is `export const meta = {...}`,
// an ObjectExpression of literals only. Prints one JSON object: meta's value
// and the first argument of every agent() call, as the parser read them.
// Exit 1 with a message when a check fails.
const acorn = require("acorn");

let src = "";
process.stdin.setEncoding("utf8");
process.stdin.on("data", (d) => (src += d));
process.stdin.on("end", () => {
  const fail = (m) => {
    process.stderr.write(`check: ${m}\n`);
    process.exit(1);
  };
  let ast;
  try {
    ast = acorn.parse(src, {
      ecmaVersion: "latest",
      sourceType: "module",
      allowAwaitOutsideFunction: true,
      allowReturnOutsideFunction: true,
    });
  } catch (e) {
    fail(`parse error: ${e.message}`);
  }
  const first = ast.body[0];
  if (!first || first.type !== "ExportNamedDeclaration") fail("the first statement is not an export");
  const decl = first.declaration;
  if (!decl || decl.type !== "VariableDeclaration" || decl.kind !== "const" || decl.declarations.length !== 1)
    fail("the export is not one const");
  const d = decl.declarations[0];
  if (d.id.name !== "meta" || !d.init || d.init.type !== "ObjectExpression") fail("meta is not an ObjectExpression");
  const literal = (n) => {
    switch (n.type) {
      case "Literal":
        return n.value;
      case "ArrayExpression":
        return n.elements.map((e) => {
          if (!e || e.type === "SpreadElement") fail("meta has a hole or a spread");
          return literal(e);
        });
      case "ObjectExpression": {
        const o = {};
        for (const p of n.properties) {
          if (p.type !== "Property" || p.kind !== "init" || p.method || p.shorthand || p.computed)
            fail(`meta has a non-plain property (${p.type})`);
          const k = p.key.type === "Identifier" ? p.key.name : p.key.type === "Literal" ? p.key.value : fail("meta key");
          o[k] = literal(p.value);
        }
        return o;
      }
      default:
        fail(`meta holds a ${n.type}, not a literal`);
    }
  };
  const meta = literal(d.init);
  const prompts = [];
  const walk = (n) => {
    if (!n || typeof n.type !== "string") return;
    if (n.type === "CallExpression" && n.callee.type === "Identifier" && n.callee.name === "agent") {
      const a = n.arguments[0];
      if (!a || a.type !== "Literal" || typeof a.value !== "string") fail("an agent() prompt is not a string literal");
      prompts.push(a.value);
    }
    for (const k of Object.keys(n)) {
      const v = n[k];
      if (Array.isArray(v)) v.forEach(walk);
      else if (v && typeof v === "object") walk(v);
    }
  };
  walk(ast);
  process.stdout.write(JSON.stringify({ meta, prompts }));
});
