// The audit log: filters, paging, chain verification, export; people,
// devices and events by name (their ids on hover).

import { useEffect, useRef, useState } from "preact/hooks";
import { api, type AuditEntry, type AuditVerification } from "../api";
import { ErrorBox, useStepUp } from "../components";
import { auditFilter, readableRef, type AuditForm, type Names } from "../logic";

const PAGE = 50;

export function Audit() {
  const [form, setForm] = useState<AuditForm>({ action: "", actor: "", result: "", since: "" });
  const [entries, setEntries] = useState<AuditEntry[]>([]);
  // The `after` of each page shown so far, for "previous".
  const [pages, setPages] = useState<number[]>([0]);
  const [next, setNext] = useState<number | null>(null);
  const [verification, setVerification] = useState<AuditVerification | null>(null);
  const [exported, setExported] = useState<string | null>(null);
  const [error, setError] = useState<unknown>(null);
  const { run, dialog } = useStepUp();
  const [names, setNames] = useState<Names>({ users: new Map(), devices: new Map(), events: new Map() });
  // Only the newest request's answer is shown (an older, slower one must not
  // overwrite a filtered page).
  const latest = useRef(0);

  async function load(after: number) {
    const request = ++latest.current;
    try {
      const page = await api.audit(auditFilter(form, after, PAGE));
      if (request !== latest.current) return;
      setEntries(page.entries);
      setNext(page.next_after);
      setError(null);
    } catch (e) {
      setError(e);
    }
  }
  useEffect(() => {
    load(0);
    api.verifyAudit().then(setVerification).catch(setError);
    // Names for the ids; without them (a list refused), the ids stand.
    Promise.all([
      api.users().catch(() => []),
      api.devices().catch(() => []),
      api.listEvents().catch(() => []),
    ]).then(([users, devices, events]) =>
      setNames({
        users: new Map(users.map((u) => [u.id, u.email])),
        devices: new Map(devices.map((d) => [d.id, d.name])),
        events: new Map(events.map((e) => [e.document_id, e.name])),
      }),
    );
  }, []);
  const named = (ref: string | null | undefined) => {
    const { text, title } = readableRef(ref, names);
    return <span title={title}>{text}</span>;
  };

  const field = (key: keyof AuditForm, label: string, placeholder: string) => (
    <label>
      {label} <input id={`audit-${key}`} value={form[key]} placeholder={placeholder} onInput={(e) => setForm({ ...form, [key]: e.currentTarget.value })} />
    </label>
  );

  return (
    <section aria-labelledby="audit-title">
      <h2 id="audit-title">Audit log</h2>
      <ErrorBox error={error} />
      {dialog}
      <p id="audit-chain" class={verification ? (verification.valid ? "ok" : "error") : ""}>
        {verification
          ? verification.valid
            ? `Chain verified: ${verification.entries} entries, untouched.`
            : `Chain broken: ${verification.problem}`
          : "Verifying the chain…"}{" "}
        <button onClick={() => api.verifyAudit().then(setVerification).catch(setError)}>Verify again</button>
      </p>
      <form
        id="audit-filter"
        onSubmit={(e) => {
          e.preventDefault();
          setPages([0]);
          load(0);
        }}
      >
        {field("action", "Action", "auth.sign_in")}
        {field("actor", "Actor", "user id or key")}
        {field("result", "Result", "ok / denied / error")}
        {field("since", "Since", "2026-11-21 or RFC 3339")}
        <button id="audit-apply" type="submit">
          Filter
        </button>
      </form>
      <table id="audit-table">
        <thead>
          <tr>
            <th>#</th>
            <th>When</th>
            <th>Actor</th>
            <th>Action</th>
            <th>Result</th>
            <th>Target</th>
          </tr>
        </thead>
        <tbody>
          {entries.map((e) => (
            <tr key={e.seq}>
              <td>{e.seq}</td>
              <td>{e.at}</td>
              <td class="actor">{named(e.actor)}</td>
              <td>{e.action}</td>
              <td>{e.result}</td>
              <td class="target">{named(e.target)}</td>
            </tr>
          ))}
        </tbody>
      </table>
      <div class="row">
        <button
          id="audit-previous"
          disabled={pages.length <= 1}
          onClick={() => {
            const rest = pages.slice(0, -1);
            setPages(rest);
            load(rest[rest.length - 1]);
          }}
        >
          Previous
        </button>
        <span id="audit-page">Page {pages.length}</span>
        <button
          id="audit-next"
          disabled={next == null}
          onClick={() => {
            if (next == null) return;
            setPages([...pages, next]);
            load(next);
          }}
        >
          Next
        </button>
        <button
          id="audit-export"
          onClick={async () => {
            try {
              const done = await run(() => api.exportAudit(auditFilter(form, 0, PAGE).since));
              setExported(`Exported ${done.entries} entries to ${done.path}`);
            } catch (e) {
              setError(e);
            }
          }}
        >
          Export…
        </button>
      </div>
      {exported && <p id="audit-exported" class="ok">{exported}</p>}
    </section>
  );
}
