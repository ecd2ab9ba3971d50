// Events: the list, a form to create or edit one, and its check-in lists
// (doors) with their rules.

import { useEffect, useState } from "preact/hooks";
import { api, on, type CheckinList, type EventDetails } from "../api";
import { ErrorBox, useEventChoice } from "../components";
import { eventFormProblem, listTimeRules, localInputToMs, msToLocalInput } from "../logic";
import { SignedTickets } from "../SignedTickets";

const emptyList: CheckinList = {
  id: "",
  name: "",
  allow_multiple_entries: false,
  allow_entry_after_exit: true,
  valid_from_ms: null,
  valid_until_ms: null,
  weekdays: "",
  max_entries_per_day: null,
  exit_all_at: null,
};

const shortDate = (ms: number) => new Date(ms).toLocaleString(undefined, { dateStyle: "short", timeStyle: "short" });

export function Events() {
  const { events, chosen, choose, reload, error: listError } = useEventChoice();
  const [details, setDetails] = useState<EventDetails | null>(null);
  const [editing, setEditing] = useState<string | null>(null); // document id, or "" for a new event
  const [form, setForm] = useState({ id: "", name: "", starts_at: "", location: "", annul: "15", time_zone: "" });
  const [list, setList] = useState<CheckinList>(emptyList);
  const [error, setError] = useState<unknown>(null);
  const [saved, setSaved] = useState<string | null>(null);

  async function load(id: string) {
    if (!id) return setDetails(null);
    try {
      setDetails(await api.eventDetails(id));
    } catch (e) {
      setDetails(null);
    }
  }
  useEffect(() => {
    load(chosen);
  }, [chosen]);
  useEffect(() => {
    const off = on<{ document: string }>("doc-changed", (c) => {
      if (!c.document || c.document === chosen) load(chosen);
    });
    return () => off.then((f) => f());
  }, [chosen]);

  function startEdit(d: EventDetails | null) {
    setSaved(null);
    setError(null);
    if (d) {
      setEditing(d.document);
      setForm({
        id: d.info.id,
        name: d.info.name,
        starts_at: d.info.starts_at,
        location: d.info.location,
        annul: String(Math.round(d.info.annul_window_ms / 60000)),
        time_zone: d.info.time_zone ?? "",
      });
    } else {
      setEditing("");
      setForm({ id: "", name: "", starts_at: "", location: "", annul: "15", time_zone: "" });
    }
  }

  async function saveEvent(e: Event) {
    e.preventDefault();
    const problem = eventFormProblem(form.id, form.name, form.annul);
    if (problem) return setError({ code: "invalid_input", message: problem });
    try {
      const id = await api.saveEvent(editing || null, {
        id: form.id.trim(),
        name: form.name.trim(),
        starts_at: form.starts_at.trim(),
        location: form.location.trim(),
        annul_window_ms: Number(form.annul) * 60000,
        time_zone: form.time_zone.trim(),
      });
      setEditing(null);
      setSaved(`Saved “${form.name.trim()}”.`);
      await reload();
      choose(id);
      await load(id);
    } catch (err) {
      setError(err);
    }
  }

  async function saveList(e: Event) {
    e.preventDefault();
    if (!details) return;
    try {
      await api.saveList(details.document, list);
      setError(null);
      setList(emptyList);
      await load(details.document);
    } catch (err) {
      setError(err);
    }
  }

  const field = (key: keyof typeof form, label: string, id: string, numeric = false) => {
    const onInput = (e: { currentTarget: HTMLInputElement }) => setForm({ ...form, [key]: e.currentTarget.value });
    return (
      <label>
        {label} {numeric ? <input id={id} type="number" value={form[key]} onInput={onInput} /> : <input id={id} type="text" value={form[key]} onInput={onInput} />}
      </label>
    );
  };

  return (
    <section aria-labelledby="events-title">
      <h2 id="events-title">Events</h2>
      <ErrorBox error={listError ?? error} />
      {saved && <p class="ok" id="saved">{saved}</p>}
      <table id="events-table">
        <thead>
          <tr>
            <th>Name</th>
            <th>Id</th>
            <th>Starts</th>
            <th>Location</th>
            <th />
          </tr>
        </thead>
        <tbody>
          {events.map((ev) => (
            <tr key={ev.document_id} class={ev.document_id === chosen ? "chosen" : ""}>
              <td>
                <button class="link" onClick={() => choose(ev.document_id)}>
                  {ev.name}
                </button>
              </td>
              <td>{ev.event_id}</td>
              <td>{ev.starts_at}</td>
              <td>{ev.location}</td>
              <td>{ev.document_id === chosen && details && <button onClick={() => startEdit(details)}>Edit</button>}</td>
            </tr>
          ))}
        </tbody>
      </table>
      {events.length === 0 && <p>No events yet.</p>}
      <button id="new-event" onClick={() => startEdit(null)}>
        New event
      </button>

      {editing !== null && (
        <form id="event-form" onSubmit={saveEvent}>
          <h3>{editing ? "Edit event" : "New event"}</h3>
          {field("id", "Event id", "event-id")}
          {field("name", "Name", "event-name")}
          {field("starts_at", "Starts (RFC 3339)", "event-starts")}
          {field("location", "Location", "event-location")}
          {field("annul", "Annulment window (minutes)", "event-annul", true)}
          {field("time_zone", "Time zone (e.g. Europe/Berlin; empty is UTC)", "event-tz")}
          <div class="row">
            <button id="save-event" type="submit">
              Save
            </button>
            <button type="button" onClick={() => setEditing(null)}>
              Cancel
            </button>
          </div>
        </form>
      )}

      {details && (
        <section aria-labelledby="lists-title">
          <h3 id="lists-title">Check-in lists of {details.info.name}</h3>
          <table id="lists-table">
            <thead>
              <tr>
                <th>List</th>
                <th>Id</th>
                <th>Multiple entries</th>
                <th>Entry after exit</th>
                <th>Time and count</th>
                <th />
              </tr>
            </thead>
            <tbody>
              {details.lists.map((l) => (
                <tr key={l.id}>
                  <td>{l.name}</td>
                  <td>{l.id}</td>
                  <td>{l.allow_multiple_entries ? "yes" : "no"}</td>
                  <td>{l.allow_entry_after_exit ? "yes" : "no"}</td>
                  <td class="list-time-rules">{listTimeRules(l, shortDate)}</td>
                  <td>
                    <button onClick={() => setList(l)}>Edit</button>
                  </td>
                </tr>
              ))}
            </tbody>
          </table>
          <form id="list-form" onSubmit={saveList}>
            <label>
              List id <input id="list-id" value={list.id} onInput={(e) => setList({ ...list, id: e.currentTarget.value })} />
            </label>
            <label>
              Name <input id="list-name" value={list.name} onInput={(e) => setList({ ...list, name: e.currentTarget.value })} />
            </label>
            <label class="check">
              <input id="list-multiple" type="checkbox" checked={list.allow_multiple_entries} onChange={(e) => setList({ ...list, allow_multiple_entries: e.currentTarget.checked })} />{" "}
              Allow multiple entries
            </label>
            <label class="check">
              <input id="list-reentry" type="checkbox" checked={list.allow_entry_after_exit} onChange={(e) => setList({ ...list, allow_entry_after_exit: e.currentTarget.checked })} />{" "}
              Allow entry after exit
            </label>
            <label>
              Entries from <input id="list-from" type="datetime-local" value={msToLocalInput(list.valid_from_ms)} onInput={(e) => setList({ ...list, valid_from_ms: localInputToMs(e.currentTarget.value) })} />
            </label>
            <label>
              until <input id="list-until" type="datetime-local" value={msToLocalInput(list.valid_until_ms)} onInput={(e) => setList({ ...list, valid_until_ms: localInputToMs(e.currentTarget.value) })} />
            </label>
            <label>
              Days <input id="list-weekdays" placeholder="every day, or e.g. fri,sat,sun" value={list.weekdays} onInput={(e) => setList({ ...list, weekdays: e.currentTarget.value })} />
            </label>
            <label>
              Entries a day{" "}
              <input
                id="list-per-day"
                type="number"
                min="1"
                placeholder="no limit"
                value={list.max_entries_per_day ?? ""}
                onInput={(e) => setList({ ...list, max_entries_per_day: e.currentTarget.value ? Number(e.currentTarget.value) : null })}
              />
            </label>
            <label>
              Everyone out at <input id="list-exit-all" placeholder="HH:MM, or empty" value={list.exit_all_at ?? ""} onInput={(e) => setList({ ...list, exit_all_at: e.currentTarget.value || null })} />
            </label>
            <button id="save-list" type="submit">
              Save list
            </button>
          </form>
          <SignedTickets documentId={details.document} />
        </section>
      )}
    </section>
  );
}
