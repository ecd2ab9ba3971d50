// Pure functions the screens use (unit-tested in logic.test.ts).

import type { AuditFilter, SyncStatus } from "./api";

export type Tone = "ok" | "syncing" | "offline" | "error";

export interface Indicator {
  tone: Tone;
  label: string;
  detail: string;
}

/** "3 s ago", "5 min ago", "2 h ago", "4 d ago". */
export function ago(ms: number, now: number): string {
  const seconds = Math.max(0, Math.round((now - ms) / 1000));
  if (seconds < 60) return `${seconds} s ago`;
  const minutes = Math.round(seconds / 60);
  if (minutes < 60) return `${minutes} min ago`;
  const hours = Math.round(minutes / 60);
  if (hours < 48) return `${hours} h ago`;
  return `${Math.round(hours / 24)} d ago`;
}

/**
 * The always-visible sync indicator: red when the last failure is newer than
 * the last success, else online/offline with changes waiting and last sync.
 */
export function syncIndicator(status: SyncStatus, now: number, signedIn = true): Indicator {
  const waiting =
    status.pending_changes === 0
      ? "nothing waiting"
      : `${status.pending_changes} change${status.pending_changes === 1 ? "" : "s"} waiting`;
  const last = status.last_sync_ms == null ? "never synced" : `last sync ${ago(status.last_sync_ms, now)}`;
  if (!signedIn) {
    // Sync waits for a session: not a failure, nothing to alarm anyone.
    return { tone: "offline", label: "Not signed in", detail: `${waiting} · ${last}` };
  }
  // Connected means the newest event was a connection that worked: whatever
  // failed before it is history.
  const failedLast =
    !status.connected &&
    status.last_error_ms != null &&
    (status.last_sync_ms == null || status.last_error_ms > status.last_sync_ms);
  if (failedLast) {
    return {
      tone: "error",
      label: "Offline: sync failing",
      detail: `${status.last_error ?? "error"} · ${waiting} · ${last}`,
    };
  }
  if (!status.connected) {
    return { tone: "offline", label: "Offline", detail: `${waiting} · ${last}` };
  }
  if (status.pending_changes > 0) {
    return { tone: "syncing", label: "Syncing", detail: `${waiting} · ${last}` };
  }
  return { tone: "ok", label: "Online", detail: `${waiting} · ${last}` };
}

/** "day-1, day-2 ,,day-3" -> ["day-1", "day-2", "day-3"] (no duplicates). */
export function parseList(text: string): string[] {
  const out: string[] = [];
  for (const part of text.split(/[,\n]/)) {
    const item = part.trim();
    if (item && !out.includes(item)) out.push(item);
  }
  return out;
}

export interface AuditForm {
  action: string;
  actor: string;
  result: string;
  since: string;
}

/** The audit screen's form as the command's filter (empty fields left out). */
export function auditFilter(form: AuditForm, after: number, limit: number): AuditFilter {
  const value = (text: string) => (text.trim() === "" ? null : text.trim());
  let since = value(form.since);
  // A date alone means from the start of that day, UTC.
  if (since && /^\d{4}-\d{2}-\d{2}$/.test(since)) since = `${since}T00:00:00Z`;
  return {
    after,
    limit,
    action: value(form.action),
    actor: value(form.actor),
    result: value(form.result),
    since,
  };
}

/** Whether an event form can be saved; the reason when not. */
export function eventFormProblem(id: string, name: string, annulMinutes: string): string | null {
  if (!id.trim()) return "The event needs an id (used in assignments, e.g. `summer-fest-2026`).";
  if (!/^[A-Za-z0-9._-]+$/.test(id.trim())) return "The event id may use letters, digits, `.`, `_` and `-` only.";
  if (!name.trim()) return "The event needs a name.";
  const minutes = Number(annulMinutes);
  if (!Number.isInteger(minutes) || minutes < 1 || minutes > 1440) {
    return "The annulment window is a whole number of minutes from 1 to 1440.";
  }
  return null;
}
