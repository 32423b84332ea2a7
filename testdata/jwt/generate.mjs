// Golden vectors for the Go verifier, made by the real signers:
//   - Better Auth's jwt() plugin, through its own flow (sign a user up,
//     call getToken, read getJwks), once per algorithm it can be configured
//     with; the first is its default (EdDSA, Ed25519);
//   - jose's SignJWT with new TextEncoder().encode(secret), the way
//     frontends of this kind mint HS256 tokens.
// Run: npm install && npm run generate   (writes vectors.json)
import { betterAuth } from "better-auth";
import { memoryAdapter } from "better-auth/adapters/memory";
import { jwt } from "better-auth/plugins";
import { SignJWT } from "jose";

const baseURL = "http://localhost:3000";
const hsSecret = "frontend-better-auth-secret-0123456789abcdef";

const configs = [
  { name: "better-auth-default-eddsa", keyPairConfig: undefined },
  { name: "better-auth-es256", keyPairConfig: { alg: "ES256" } },
  { name: "better-auth-es512", keyPairConfig: { alg: "ES512" } },
  { name: "better-auth-rs256", keyPairConfig: { alg: "RS256", modulusLength: 2048 } },
  { name: "better-auth-ps256", keyPairConfig: { alg: "PS256", modulusLength: 2048 } },
];

function claimsOf(token) {
  return JSON.parse(Buffer.from(token.split(".")[1], "base64url").toString());
}

const vectors = [];
for (const config of configs) {
  const db = { user: [], session: [], account: [], verification: [], jwks: [] };
  const auth = betterAuth({
    baseURL,
    secret: "better-auth-instance-secret-for-vectors-0123456789",
    database: memoryAdapter(db),
    emailAndPassword: { enabled: true },
    plugins: [jwt(config.keyPairConfig ? { jwks: { keyPairConfig: config.keyPairConfig } } : {})],
    logger: { disabled: true },
  });
  const { headers } = await auth.api.signUpEmail({
    body: { email: "ada@example.com", password: "correct horse battery staple", name: "Ada Lovelace" },
    returnHeaders: true,
  });
  const cookie = headers.get("set-cookie").split(";")[0];
  const { token } = await auth.api.getToken({ headers: new Headers({ cookie }) });
  const jwks = await auth.api.getJwks();
  const claims = claimsOf(token);
  vectors.push({ name: config.name, kind: "jwks", jwks, token, sub: claims.sub, iat: claims.iat, exp: claims.exp });
}

const now = Math.floor(Date.now() / 1000);
const key = new TextEncoder().encode(hsSecret);
const hs = [
  {
    name: "jose-hs256-sub",
    token: await new SignJWT({ sub: "user-hs-1", email: "grace@example.com" })
      .setProtectedHeader({ alg: "HS256" }).setIssuedAt(now).setExpirationTime(now + 3600).sign(key),
    sub: "user-hs-1",
  },
  {
    name: "jose-hs256-typ-iss-aud",
    token: await new SignJWT({ sub: "user-hs-2" })
      .setProtectedHeader({ alg: "HS256", typ: "JWT" }).setIssuedAt(now).setExpirationTime(now + 3600)
      .setIssuer(baseURL).setAudience(baseURL).sign(key),
    sub: "user-hs-2",
  },
  {
    name: "jose-hs256-userId-claim",
    token: await new SignJWT({ userId: "user-hs-3" })
      .setProtectedHeader({ alg: "HS256" }).setIssuedAt(now).setExpirationTime(now + 3600).sign(key),
    sub: "user-hs-3",
  },
];
for (const v of hs) {
  vectors.push({ name: v.name, kind: "hs256", secret: hsSecret, token: v.token, sub: v.sub, iat: now, exp: now + 3600 });
}

process.stdout.write(JSON.stringify({
  generated_by: "testdata/jwt/generate.mjs with better-auth 1.7.25 and jose 6.2.18",
  base_url: baseURL,
  vectors,
}, null, 2) + "\n");
