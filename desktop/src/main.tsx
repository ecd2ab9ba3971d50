// The admin app's shell: sign-in until signed in, then a navigation of
// screens (hash routes, so links work with the keyboard) under an
// always-visible sync indicator.

import { render } from "preact";
import { useEffect, useState } from "preact/hooks";
import { api, on, type AppInfo, type Session, type SyncStatus } from "./api";
import { SyncIndicator } from "./components";
import { RecoveryCodes, SignIn } from "./screens/SignIn";
import { Events } from "./screens/Events";
import { Import } from "./screens/Import";
import { Search } from "./screens/Search";
import { Dashboard } from "./screens/Dashboard";
import { Users } from "./screens/Users";
import { Devices } from "./screens/Devices";
import { Audit } from "./screens/Audit";
import { MySettings } from "./screens/MySettings";
import { Health } from "./screens/Health";

const screens: { path: string; label: string }[] = [
  { path: "events", label: "Events" },
  { path: "import", label: "Import attendees" },
  { path: "search", label: "Search" },
  { path: "dashboard", label: "Live check-in" },
  { path: "users", label: "Users" },
  { path: "devices", label: "Devices" },
  { path: "audit", label: "Audit log" },
  { path: "health", label: "Server health" },
  { path: "settings", label: "My settings" },
];

function route(): string {
  return location.hash.replace(/^#\/?/, "") || "events";
}

function App() {
  const [info, setInfo] = useState<AppInfo | null>(null);
  const [session, setSession] = useState<Session | null>(null);
  const [status, setStatus] = useState<SyncStatus | null>(null);
  const [path, setPath] = useState(route());
  // Shown once after enrollment, before anything else.
  const [recoveryCodes, setRecoveryCodes] = useState<string[] | null>(null);

  useEffect(() => {
    api.appInfo().then((i) => {
      setInfo(i);
      setSession(i.session);
      setStatus(i.status);
    });
    const unlisten = [on<SyncStatus>("sync-status", setStatus), on<Session>("session", setSession)];
    // The status also changes without events (time since the last sync).
    const poll = setInterval(() => api.syncStatus().then(setStatus), 2000);
    const onHash = () => setPath(route());
    addEventListener("hashchange", onHash);
    return () => {
      clearInterval(poll);
      removeEventListener("hashchange", onHash);
      unlisten.forEach((u) => u.then((f) => f()));
    };
  }, []);

  if (!info || !session) return <p>Opening…</p>;
  const signedIn = session.state === "signed_in";
  const page = recoveryCodes ? (
    <RecoveryCodes codes={recoveryCodes} onDone={() => setRecoveryCodes(null)} />
  ) : !signedIn ? (
    <SignIn info={info} session={session} onSignedIn={setSession} onRecoveryCodes={setRecoveryCodes} />
  ) : path === "import" ? (
    <Import />
  ) : path === "search" ? (
    <Search />
  ) : path === "dashboard" ? (
    <Dashboard />
  ) : path === "users" ? (
    <Users />
  ) : path === "devices" ? (
    <Devices />
  ) : path === "audit" ? (
    <Audit />
  ) : path === "health" ? (
    <Health />
  ) : path === "settings" ? (
    <MySettings />
  ) : (
    <Events />
  );
  return (
    <div class="shell">
      <header>
        <h1>Sync Admin</h1>
        <SyncIndicator status={status} signedIn={signedIn} />
        {signedIn && (
          <div class="who">
            <span id="signed-in-as">{session.email}</span>
            <button
              id="sign-out"
              onClick={async () => {
                await api.signOut();
                setSession(await api.appInfo().then((i) => i.session));
              }}
            >
              Sign out
            </button>
          </div>
        )}
      </header>
      {signedIn && !recoveryCodes && (
        <nav aria-label="Screens">
          {screens.map((s) => (
            <a key={s.path} id={`nav-${s.path}`} href={`#/${s.path}`} aria-current={path === s.path ? "page" : undefined}>
              {s.label}
            </a>
          ))}
        </nav>
      )}
      <main id={`screen-${signedIn && !recoveryCodes ? path : "sign-in"}`} class={signedIn && !recoveryCodes ? "" : "wide"}>
        {page}
      </main>
    </div>
  );
}

render(<App />, document.getElementById("app")!);
