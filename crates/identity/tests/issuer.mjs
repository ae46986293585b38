// A real OIDC issuer on 127.0.0.1 for warrant-identity's tests: the npm
// `oauth2-mock-server` package (its discovery document, JWKS endpoint and
// JWT signing), driven over stdin/stdout so the Rust tests can ask for
// exactly the tokens they need.
//
// Usage: node issuer.mjs <path to oauth2-mock-server/dist/index.mjs>
// Prints {"issuer": "<url>", "kid": "<main key id>"} once listening, then
// answers one JSON command per stdin line with one JSON line:
//   {"op":"token","signer":"main"|"unpublished"|"impostor"|<kid>,
//    "claims":{...},"header":{...},"expires_in":<s>}  -> {"token": ...}
//      claims/header members set to null are removed from the token
//   {"op":"add_key","alg":"ES256"}                     -> {"kid": ...}
//   {"op":"jwks_fetches"}                              -> {"count": n}
//   {"op":"stop"}  stop serving (the issuer is down)   -> {"ok": true}
import http from 'node:http';
import readline from 'node:readline';
import { pathToFileURL } from 'node:url';

const { OAuth2Issuer, OAuth2Service } = await import(pathToFileURL(process.argv[2]).href);

const issuer = new OAuth2Issuer();
const service = new OAuth2Service(issuer);
const main = await issuer.keys.generate('ES256');
// A key the issuer never publishes.
const stranger = new OAuth2Issuer();
await stranger.keys.generate('ES256');
// Another private key under the published key's `kid`.
const impostor = new OAuth2Issuer();
await impostor.keys.generate('ES256', { kid: main.kid });

let jwksFetches = 0;
const handle = service.requestHandler;
const server = http.createServer((req, res) => {
  if (req.url === '/jwks') jwksFetches += 1;
  handle(req, res);
});
await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
const url = `http://127.0.0.1:${server.address().port}`;
for (const i of [issuer, stranger, impostor]) i.url = url;

function applyOverrides(target, overrides) {
  for (const [k, v] of Object.entries(overrides ?? {})) {
    if (v === null) delete target[k];
    else target[k] = v;
  }
}

async function run(cmd) {
  switch (cmd.op) {
    case 'token': {
      const signer = cmd.signer ?? 'main';
      const [from, kid] =
        signer === 'main' ? [issuer, main.kid]
        : signer === 'unpublished' ? [stranger, undefined]
        : signer === 'impostor' ? [impostor, main.kid]
        : [issuer, signer];
      const token = await from.buildToken({
        kid,
        expiresIn: cmd.expires_in ?? 600,
        scopesOrTransform: (header, payload) => {
          applyOverrides(payload, cmd.claims);
          applyOverrides(header, cmd.header);
        },
      });
      return { token };
    }
    case 'add_key': {
      const key = await issuer.keys.generate(cmd.alg ?? 'ES256');
      return { kid: key.kid };
    }
    case 'jwks_fetches':
      return { count: jwksFetches };
    case 'stop':
      server.closeAllConnections();
      await new Promise((resolve) => server.close(resolve));
      return { ok: true };
    default:
      return { error: `unknown op ${cmd.op}` };
  }
}

process.stdout.write(JSON.stringify({ issuer: url, kid: main.kid }) + '\n');
const lines = readline.createInterface({ input: process.stdin });
for await (const line of lines) {
  let answer;
  try {
    answer = await run(JSON.parse(line));
  } catch (e) {
    answer = { error: String(e) };
  }
  process.stdout.write(JSON.stringify(answer) + '\n');
}
process.exit(0);
