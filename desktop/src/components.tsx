// Small shared pieces: error box, the sync indicator, the step-up dialog.

import { useEffect, useRef, useState } from "preact/hooks";
import { api, errorText, isCommandError, type EventSummary, type SyncStatus } from "./api";
import { syncIndicator } from "./logic";

export function ErrorBox({ error }: { error: unknown }) {
  if (error == null) return null;
  return (
    <p class="error" role="alert" id="error">
      {errorText(error)}
    </p>
  );
}

export function SyncIndicator({ status, signedIn }: { status: SyncStatus | null; signedIn: boolean }) {
  const [now, setNow] = useState(Date.now());
  useEffect(() => {
    const timer = setInterval(() => setNow(Date.now()), 1000);
    return () => clearInterval(timer);
  }, []);
  if (!status) return null;
  const indicator = syncIndicator(status, now, signedIn);
  return (
    <div class={`sync sync-${indicator.tone}`} id="sync-indicator" data-tone={indicator.tone} role="status" aria-live="polite">
      <strong>{indicator.label}</strong> <span>{indicator.detail}</span>
      {indicator.raw && (
        <details id="sync-error-details">
          <summary>Details</summary>
          <code>{indicator.raw}</code>
        </details>
      )}
    </div>
  );
}

/**
 * Runs `action`; when the server wants a fresh second factor (role changes,
 * new admins, audit export), asks for a code in a dialog, steps up, retries.
 */
export function useStepUp() {
  const [asking, setAsking] = useState<null | ((code: string | null) => void)>(null);
  async function run<T>(action: () => Promise<T>): Promise<T> {
    try {
      return await action();
    } catch (e) {
      if (!isCommandError(e) || e.code !== "step_up_required") throw e;
      const code = await new Promise<string | null>((resolve) => setAsking(() => resolve));
      setAsking(null);
      if (code == null) throw e;
      await api.stepUp(code);
      return await action();
    }
  }
  const dialog = asking ? <StepUpDialog onDone={asking} /> : null;
  return { run, dialog };
}

function StepUpDialog({ onDone }: { onDone: (code: string | null) => void }) {
  const [code, setCode] = useState("");
  const input = useRef<HTMLInputElement>(null);
  useEffect(() => input.current?.focus(), []);
  return (
    <div class="modal" role="dialog" aria-modal="true" aria-labelledby="step-up-title">
      <form
        id="step-up-form"
        onSubmit={(e) => {
          e.preventDefault();
          onDone(code);
        }}
        onKeyDown={(e) => e.key === "Escape" && onDone(null)}
      >
        <h2 id="step-up-title">Confirm it is you</h2>
        <p>This action needs a fresh code from your authenticator app.</p>
        <label>
          Code <input id="step-up-code" ref={input} inputMode="numeric" autoComplete="one-time-code" value={code} onInput={(e) => setCode(e.currentTarget.value)} />
        </label>
        <div class="row">
          <button type="submit">Confirm</button>
          <button type="button" onClick={() => onDone(null)}>
            Cancel
          </button>
        </div>
      </form>
    </div>
  );
}

export function time(ms: number | null | undefined): string {
  if (ms == null) return "—";
  return new Date(ms).toLocaleString();
}

/** Picks one of the events on this computer (remembered between screens). */
export function useEventChoice() {
  const [events, setEvents] = useState<EventSummary[]>([]);
  const [chosen, setChosen] = useState<string>(localStorage.getItem("event") ?? "");
  const [error, setError] = useState<unknown>(null);
  async function reload() {
    try {
      const list = await api.listEvents();
      setEvents(list);
      if (list.length > 0 && !list.some((e) => e.document_id === chosen)) choose(list[0].document_id);
      setError(null);
    } catch (e) {
      setError(e);
    }
  }
  function choose(id: string) {
    localStorage.setItem("event", id);
    setChosen(id);
  }
  useEffect(() => {
    reload();
  }, []);
  const picker = (
    <label class="picker">
      Event{" "}
      <select id="event-picker" value={chosen} onChange={(e) => choose(e.currentTarget.value)}>
        {events.map((e) => (
          <option key={e.document_id} value={e.document_id}>
            {e.name} ({e.event_id})
          </option>
        ))}
      </select>
    </label>
  );
  return { events, chosen, choose, reload, picker, error };
}
