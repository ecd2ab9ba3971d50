// Sign-in: server, email and password, then a TOTP code (or a recovery
// code); on first sign-in, enrollment with the QR code and the recovery
// codes, shown once.

import { useState } from "preact/hooks";
import { api, type AppInfo, type Enrollment, type Session } from "../api";
import { ErrorBox } from "../components";

type Step =
  | { kind: "password" }
  | { kind: "code"; challenge: string; recovery: boolean }
  | { kind: "enroll"; challenge: string; enrollment: Enrollment };

/** The recovery codes right after enrollment: shown once, until dismissed. */
export function RecoveryCodes({ codes, onDone }: { codes: string[]; onDone: () => void }) {
  return (
    <section aria-labelledby="codes-title">
      <h2 id="codes-title">Your recovery codes</h2>
      <p>Each code signs you in once if you lose your phone. They are shown only now: store them somewhere safe.</p>
      <ol id="recovery-codes" class="codes">
        {codes.map((c) => (
          <li key={c}>
            <code>{c}</code>
          </li>
        ))}
      </ol>
      <button id="codes-saved" onClick={onDone} autoFocus>
        I have saved them
      </button>
    </section>
  );
}

export function SignIn({
  info,
  session,
  onSignedIn,
  onRecoveryCodes,
}: {
  info: AppInfo;
  session: Session;
  onSignedIn: (s: Session) => void;
  onRecoveryCodes: (codes: string[]) => void;
}) {
  const [server, setServer] = useState(info.server_url);
  const [caPem, setCaPem] = useState(info.server_ca_pem ?? "");
  const [pins, setPins] = useState(info.server_pinned_keys.join(", "));
  const [email, setEmail] = useState("");
  const [password, setPassword] = useState("");
  const [code, setCode] = useState("");
  const [step, setStep] = useState<Step>({ kind: "password" });
  const [error, setError] = useState<unknown>(null);
  const [busy, setBusy] = useState(false);

  async function attempt(action: () => Promise<void>) {
    setBusy(true);
    setError(null);
    try {
      await action();
    } catch (e) {
      setError(e);
    } finally {
      setBusy(false);
    }
  }

  const notice =
    session.state === "needs_sign_in"
      ? `Your session ended (${session.reason ?? "signed out elsewhere"}). Sign in again: nothing was lost.`
      : session.state === "revoked"
        ? "This device was revoked by an administrator; its local data was wiped."
        : null;

  return (
    <section aria-labelledby="sign-in-title">
      <h2 id="sign-in-title">Sign in</h2>
      {notice && <p class="notice">{notice}</p>}
      <ErrorBox error={error} />
      {step.kind === "password" && (
        <form
          id="sign-in-form"
          onSubmit={(e) => {
            e.preventDefault();
            attempt(async () => {
              const pinList = pins.split(",").map((p) => p.trim()).filter((p) => p !== "");
              await api.setServer(server, caPem.trim() === "" ? null : caPem, pinList);
              const answer = await api.signIn(email, password);
              if (answer.status === "signed_in") onSignedIn(answer.session);
              else if (answer.status === "second_factor") setStep({ kind: "code", challenge: answer.challenge, recovery: false });
              else setStep({ kind: "enroll", challenge: answer.challenge, enrollment: await api.startEnrollment(answer.challenge) });
            });
          }}
        >
          <label>
            Server <input id="server" value={server} onInput={(e) => setServer(e.currentTarget.value)} />
          </label>
          <details open={caPem !== "" || pins !== ""}>
            <summary>Server certificate</summary>
            <label>
              Venue CA (PEM, trusted beside the system's){" "}
              <textarea id="server-ca" rows={4} value={caPem} onInput={(e) => setCaPem(e.currentTarget.value)} />
            </label>
            <label>
              Pinned server keys (SHA-256, base64, comma-separated){" "}
              <input id="server-pins" value={pins} onInput={(e) => setPins(e.currentTarget.value)} />
            </label>
          </details>
          <label>
            Email <input id="email" type="email" autoComplete="username" value={email} onInput={(e) => setEmail(e.currentTarget.value)} autoFocus />
          </label>
          <label>
            Password{" "}
            <input id="password" type="password" autoComplete="current-password" value={password} onInput={(e) => setPassword(e.currentTarget.value)} />
          </label>
          <button id="sign-in" type="submit" disabled={busy}>
            Sign in
          </button>
        </form>
      )}
      {step.kind === "code" && (
        <form
          id="code-form"
          onSubmit={(e) => {
            e.preventDefault();
            attempt(async () => onSignedIn(await api.submitCode(step.challenge, code, step.recovery)));
          }}
        >
          <label>
            {step.recovery ? "Recovery code" : "Code from your authenticator app"}{" "}
            <input id="code" autoComplete="one-time-code" value={code} onInput={(e) => setCode(e.currentTarget.value)} autoFocus />
          </label>
          <button id="submit-code" type="submit" disabled={busy}>
            Continue
          </button>
          <button type="button" class="link" onClick={() => setStep({ ...step, recovery: !step.recovery })}>
            {step.recovery ? "Use the authenticator app" : "Use a recovery code"}
          </button>
        </form>
      )}
      {step.kind === "enroll" && (
        <form
          id="enroll-form"
          onSubmit={(e) => {
            e.preventDefault();
            attempt(async () => {
              const done = await api.confirmEnrollment(step.challenge, code);
              onRecoveryCodes(done.recovery_codes);
              onSignedIn(done.session);
            });
          }}
        >
          <p>Your account needs a second factor. Scan this code with an authenticator app, then enter the code it shows.</p>
          <img id="enroll-qr" alt="QR code for your authenticator app" src={`data:image/png;base64,${step.enrollment.qr_png_base64}`} width={220} height={220} />
          <p>
            Or type the key: <code id="enroll-secret">{step.enrollment.secret}</code>
          </p>
          <label>
            Code <input id="code" autoComplete="one-time-code" value={code} onInput={(e) => setCode(e.currentTarget.value)} autoFocus />
          </label>
          <button id="confirm-enrollment" type="submit" disabled={busy}>
            Confirm
          </button>
        </form>
      )}
    </section>
  );
}
