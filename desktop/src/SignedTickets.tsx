// Signed tickets of one event: turn them on (the server's key goes into the
// event, so every tablet checks codes offline), issue a code for an
// attendee (signed by the server; shown with its QR code, to print), and
// revoke an attendee's codes (a code issued afterwards is good).

import { useEffect, useState } from "preact/hooks";
import { api, type IssuedTicket } from "./api";
import { ErrorBox } from "./components";
import { localInputToMs } from "./logic";

export function SignedTickets({ documentId }: { documentId: string }) {
  const [key, setKey] = useState<string | null | undefined>(undefined);
  const [form, setForm] = useState({ attendee: "", type: "", from: "", until: "" });
  const [issued, setIssued] = useState<IssuedTicket | null>(null);
  const [revoke, setRevoke] = useState("");
  const [done, setDone] = useState<string | null>(null);
  const [error, setError] = useState<unknown>(null);

  useEffect(() => {
    setIssued(null);
    setDone(null);
    api.ticketKey(documentId).then(setKey).catch(setError);
  }, [documentId]);

  async function act(work: () => Promise<void>) {
    try {
      await work();
      setError(null);
    } catch (e) {
      setError(e);
    }
  }

  return (
    <section aria-labelledby="signed-title" id="signed-tickets">
      <h3 id="signed-title">Signed tickets</h3>
      <ErrorBox error={error} />
      {key === undefined ? null : key ? (
        <p id="signed-status">
          On: tablets check codes signed with <code title={key}>{key.slice(0, 20)}…</code>, offline too.
        </p>
      ) : (
        <p id="signed-status">
          Off.{" "}
          <button id="enable-signed" onClick={() => act(async () => setKey(await api.enableSignedTickets(documentId)))}>
            Turn on signed tickets
          </button>
        </p>
      )}
      {key && (
        <form
          id="issue-form"
          onSubmit={(e) => {
            e.preventDefault();
            act(async () => {
              setIssued(
                await api.issueTicket(documentId, {
                  attendee_id: form.attendee.trim(),
                  ticket_type: form.type.trim(),
                  valid_from_ms: localInputToMs(form.from),
                  valid_until_ms: localInputToMs(form.until),
                }),
              );
            });
          }}
        >
          <label>
            Attendee id <input id="issue-attendee" value={form.attendee} onInput={(e) => setForm({ ...form, attendee: e.currentTarget.value })} />
          </label>
          <label>
            Ticket type <input id="issue-type" value={form.type} onInput={(e) => setForm({ ...form, type: e.currentTarget.value })} />
          </label>
          <label>
            Valid from <input id="issue-from" type="datetime-local" value={form.from} onInput={(e) => setForm({ ...form, from: e.currentTarget.value })} />
          </label>
          <label>
            until <input id="issue-until" type="datetime-local" value={form.until} onInput={(e) => setForm({ ...form, until: e.currentTarget.value })} />
          </label>
          <button id="issue-ticket" type="submit">
            Issue a signed code
          </button>
        </form>
      )}
      {issued && (
        <div id="issued" class="issued">
          <img id="issued-qr" alt={`QR code of ${issued.code}`} src={`data:image/png;base64,${issued.qr_png_base64}`} />
          <p>
            <code id="issued-code">{issued.code}</code>
          </p>
          <button id="print-ticket" type="button" onClick={() => window.print()}>
            Print
          </button>
        </div>
      )}
      {key && (
        <form
          id="revoke-form"
          onSubmit={(e) => {
            e.preventDefault();
            act(async () => {
              await api.revokeSignedCodes(documentId, revoke.trim());
              setDone(`Codes of ${revoke.trim()} issued until now are refused at every door.`);
            });
          }}
        >
          <label>
            Revoke the codes of attendee <input id="revoke-attendee" value={revoke} onInput={(e) => setRevoke(e.currentTarget.value)} />
          </label>
          <button id="revoke-codes" type="submit">
            Revoke
          </button>
          {done && (
            <span class="ok" id="revoked">
              {" "}
              {done}
            </span>
          )}
        </form>
      )}
    </section>
  );
}
