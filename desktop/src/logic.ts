// Pure functions the screens use (unit-tested in logic.test.ts).

import type { AuditFilter, ServerStatus, SyncStatus } from "./api";

export type Tone = "ok" | "syncing" | "offline" | "error";

export interface Indicator {
  tone: Tone;
  label: string;
  detail: string;
  /** The failure as it came, for a details toggle. */
  raw?: string;
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
    // In words for the people at the door, with the next try; the error as
    // it came stays behind a details toggle.
    const retry =
      status.next_retry_ms == null ? null : status.next_retry_ms > now ? `retrying in ${Math.ceil((status.next_retry_ms - now) / 1000)} s` : "retrying now";
    const label = status.problem ?? "Offline: sync failing";
    return {
      tone: "error",
      label: retry ? `${label}; ${retry}` : label,
      detail: `${waiting} · ${last}`,
      raw: status.last_error ?? undefined,
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

/** A span of seconds: "42 s", "5 min", "1 h", "3 h 20 min", "4 d 2 h". */
export function duration(seconds: number): string {
  const s = Math.max(0, Math.floor(seconds));
  if (s < 60) return `${s} s`;
  const minutes = Math.floor(s / 60);
  if (minutes < 60) return `${minutes} min`;
  const hours = Math.floor(minutes / 60);
  if (hours < 48) return minutes % 60 === 0 ? `${hours} h` : `${hours} h ${minutes % 60} min`;
  return `${Math.floor(hours / 24)} d ${hours % 24} h`;
}

/** Slower than this, the store is worth a look. */
export const SLOW_STORE_MS = 100;

/**
 * What on the server health screen needs an administrator's attention, most
 * urgent first (empty when all is well): migrations not run, a slow store,
 * backups that cannot be read or are overdue (older than two periods), the
 * day's security alerts.
 */
export function healthConcerns(status: ServerStatus): string[] {
  const concerns: string[] = [];
  const { store, backups } = status;
  if (store.migrations_pending) {
    concerns.push(
      `The store is at schema ${store.schema_version} and this server expects ${store.expected_version}: run the migrations.`,
    );
  }
  if (store.latency_ms > SLOW_STORE_MS) {
    concerns.push(`The store took ${Math.round(store.latency_ms)} ms to answer.`);
  }
  if (backups.problem) {
    concerns.push(`Backups: ${backups.problem}`);
  } else if (backups.scheduled && backups.every_s != null) {
    const overdue = 2 * backups.every_s;
    if (backups.last == null) {
      if (status.uptime_s > overdue) concerns.push(`No scheduled backup in ${duration(status.uptime_s)} of running.`);
    } else if (backups.last.age_s > overdue) {
      concerns.push(
        `The newest backup is ${duration(backups.last.age_s)} old; one is due every ${duration(backups.every_s)}.`,
      );
    }
  }
  if (status.security_alerts_24h > 0) {
    const n = status.security_alerts_24h;
    const newest = status.last_security_alert;
    concerns.push(
      `${n} security alert${n === 1 ? "" : "s"} in the last 24 hours` +
        (newest ? ` (newest: ${newest.kind.replaceAll("_", " ")}, ${newest.actor}).` : "."),
    );
  }
  return concerns;
}

/** The time and count rules of a list in a few words ("sat,sun · 2 a day · all out at 04:00"), or "none". */
export function listTimeRules(
  list: { valid_from_ms: number | null; valid_until_ms: number | null; weekdays: string; max_entries_per_day: number | null; exit_all_at: string | null },
  formatDate: (ms: number) => string,
): string {
  const parts: string[] = [];
  if (list.valid_from_ms != null) parts.push(`from ${formatDate(list.valid_from_ms)}`);
  if (list.valid_until_ms != null) parts.push(`until ${formatDate(list.valid_until_ms)}`);
  if (list.weekdays) parts.push(list.weekdays);
  if (list.max_entries_per_day != null) parts.push(`${list.max_entries_per_day} a day`);
  if (list.exit_all_at) parts.push(`all out at ${list.exit_all_at}`);
  return parts.length ? parts.join(" · ") : "none";
}

/** A datetime-local input's value as Unix ms (the computer's zone), or null when empty. */
export function localInputToMs(value: string): number | null {
  if (!value.trim()) return null;
  const ms = new Date(value).getTime();
  return Number.isNaN(ms) ? null : ms;
}

/** Unix ms as a datetime-local input's value (the computer's zone, to the minute). */
export function msToLocalInput(ms: number | null): string {
  if (ms == null) return "";
  const d = new Date(ms);
  const pad = (n: number) => String(n).padStart(2, "0");
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())}T${pad(d.getHours())}:${pad(d.getMinutes())}`;
}

/**
 * Arrivals as the chart's columns: one x per bucket from the one before the
 * first to the one after the last (empty buckets included, so the line
 * starts and drops to zero, and a single bucket is not drawn across years),
 * one series of entries per list in `lists` order.
 */
export function arrivalSeries(
  arrivals: { list_id: string; start_ms: number; entries: number }[],
  lists: string[],
  bucketMinutes: number,
): { x: number[]; series: number[][] } {
  if (arrivals.length === 0) return { x: [], series: lists.map(() => []) };
  const width = bucketMinutes * 60_000;
  const first = Math.min(...arrivals.map((a) => a.start_ms)) - width;
  const last = Math.max(...arrivals.map((a) => a.start_ms)) + width;
  const x: number[] = [];
  for (let t = first; t <= last; t += width) x.push(t / 1000);
  const series = lists.map(() => x.map(() => 0));
  for (const a of arrivals) {
    const row = lists.indexOf(a.list_id);
    if (row >= 0) series[row][Math.round((a.start_ms - first) / width)] += a.entries;
  }
  return { x, series };
}

/** "2.5 s", "1 min 5 s", "—". */
export function gap(ms: number | null): string {
  if (ms == null) return "—";
  if (ms < 60_000) return `${Math.round(ms / 100) / 10} s`;
  const minutes = Math.floor(ms / 60_000);
  return `${minutes} min ${Math.round((ms % 60_000) / 1000)} s`;
}

/** A device by its name where the server's records tell it, by the start of its id otherwise. */
export function deviceName(names: Map<string, { name: string }>, id: string): string {
  return names.get(id)?.name || id.slice(0, 8);
}

/** What the audit log's ids are called: users by email, devices and events by name. */
export interface Names {
  users: Map<string, string>;
  devices: Map<string, string>;
  events: Map<string, string>;
}

/**
 * An audit log reference (`user:<id>`, `device:<id>`, `api_key:<name>`, or
 * a bare id of a user, device or event document) in words, with the id it
 * stands for kept for hovering. Unknown references stay as they are.
 */
export function readableRef(ref: string | null | undefined, names: Names): { text: string; title: string } {
  if (!ref) return { text: "", title: "" };
  const [kind, rest] = ref.includes(":") ? [ref.slice(0, ref.indexOf(":")), ref.slice(ref.indexOf(":") + 1)] : ["", ref];
  const lookup = (id: string) => names.users.get(id) ?? names.devices.get(id) ?? names.events.get(id);
  let text: string | undefined;
  switch (kind) {
    case "user":
      text = names.users.get(rest);
      break;
    case "device":
      text = names.devices.get(rest);
      break;
    case "document":
    case "event":
      text = names.events.get(rest);
      break;
    case "api_key":
      text = `API key ${rest}`;
      break;
    case "":
      text = lookup(rest);
      break;
  }
  return { text: text ?? ref, title: ref };
}
