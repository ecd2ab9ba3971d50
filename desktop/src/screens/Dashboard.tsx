// The live check-in dashboard: counts per list as scans arrive from tablets,
// the arrival curve, the fleet's readiness (each tablet by its name: holds
// the event, uploads waiting, app version, last sync), each tablet's tally,
// no-shows per ticket type, recent scans, duplicates to review; the
// check-in report exported as CSV.

import { save } from "@tauri-apps/plugin-dialog";
import { useEffect, useState } from "preact/hooks";
import { api, on, type Dashboard as Data, type Device, type Tablet } from "../api";
import { ArrivalChart } from "../ArrivalChart";
import { ErrorBox, time, useEventChoice } from "../components";
import { ago, deviceName, gap } from "../logic";

/** Device names from the server's records (empty while it is out of reach). */
type Names = Map<string, Device>;

function Tablets({ tablets, names }: { tablets: Tablet[]; names: Names }) {
  if (tablets.length === 0) return <span class="muted">none</span>;
  const now = Date.now();
  return (
    <span>
      {tablets.map((t) => (
        <span key={t.device_id} class="tablet" title={t.device_id}>
          {deviceName(names, t.device_id)} (synced {t.last_synced_ms ? ago(t.last_synced_ms, now) : "—"})
        </span>
      ))}
    </span>
  );
}

function Fleet({ data, names }: { data: Data; names: Names }) {
  const now = Date.now();
  const tablets = [...data.lists.flatMap((l) => l.tablets), ...data.other_tablets];
  const door = (t: Tablet) => data.lists.find((l) => l.list.id === t.list_id)?.list.name ?? (t.list_id ? t.list_id : "—");
  if (tablets.length === 0) return <p class="muted">No tablet heard in the last 30 s.</p>;
  return (
    <table id="fleet">
      <thead>
        <tr>
          <th>Device</th>
          <th>Door</th>
          <th>Holds the event</th>
          <th>Uploads waiting</th>
          <th>App version</th>
          <th>Last sync</th>
        </tr>
      </thead>
      <tbody>
        {tablets.map((t) => (
          <tr key={t.device_id} data-device={t.device_id} class={t.holds_event === false || (t.pending_uploads ?? 0) > 0 ? "attention" : ""}>
            <td title={t.device_id}>{deviceName(names, t.device_id)}</td>
            <td>{door(t)}</td>
            <td>{t.holds_event == null ? "?" : t.holds_event ? "yes" : "downloading"}</td>
            <td>{t.pending_uploads ?? "?"}</td>
            <td>{t.app_version ?? names.get(t.device_id)?.app_version ?? "?"}</td>
            <td>{t.last_synced_ms ? ago(t.last_synced_ms, now) : "never"}</td>
          </tr>
        ))}
      </tbody>
    </table>
  );
}

export function Dashboard() {
  const { chosen, picker, error: listError } = useEventChoice();
  const [data, setData] = useState<Data | null>(null);
  const [error, setError] = useState<unknown>(null);
  const [names, setNames] = useState<Names>(new Map());
  const [exportPath, setExportPath] = useState("");
  const [exported, setExported] = useState<string | null>(null);

  async function exportReport(e: Event) {
    e.preventDefault();
    try {
      const rows = await api.exportReport(chosen, exportPath);
      setExported(`Wrote ${rows} attendees to ${exportPath.trim()}.`);
      setError(null);
    } catch (err) {
      setExported(null);
      setError(err);
    }
  }

  // Names change rarely: asked for now and every 30 s; out of reach, the
  // ids stand in.
  useEffect(() => {
    const load = () =>
      api
        .devices()
        .then((all) => setNames(new Map(all.map((d) => [d.id, d]))))
        .catch(() => {});
    load();
    const timer = setInterval(load, 30_000);
    return () => clearInterval(timer);
  }, []);

  useEffect(() => {
    if (!chosen) return;
    let pending = false;
    const refresh = () => {
      // Many changes arrive together (a tablet's backlog): one refresh per frame.
      if (pending) return;
      pending = true;
      setTimeout(() => {
        pending = false;
        api
          .dashboard(chosen)
          .then((d) => (setData(d), setError(null)))
          .catch(setError);
      }, 150);
    };
    refresh();
    const off = on<{ document: string }>("doc-changed", (c) => {
      if (!c.document || c.document === chosen) refresh();
    });
    const poll = setInterval(refresh, 5000); // tablets' beacons are not document changes
    return () => {
      clearInterval(poll);
      off.then((f) => f());
    };
  }, [chosen]);

  return (
    <section aria-labelledby="dashboard-title">
      <h2 id="dashboard-title">Live check-in</h2>
      <ErrorBox error={listError ?? error} />
      {picker}
      {data && (
        <div>
          <p id="event-totals" class="totals">
            <strong id="total-checked-in">{data.checked_in}</strong> of {data.expected} checked in · <strong>{data.inside}</strong> inside now
          </p>
          <table id="list-counts">
            <thead>
              <tr>
                <th>List</th>
                <th>Expected</th>
                <th>Checked in</th>
                <th>Inside</th>
                <th>Tablets online</th>
              </tr>
            </thead>
            <tbody>
              {data.lists.map((l) => (
                <tr key={l.list.id} data-list={l.list.id}>
                  <td>{l.list.name}</td>
                  <td>{l.expected}</td>
                  <td class="checked-in">{l.checked_in}</td>
                  <td>{l.inside}</td>
                  <td>
                    <Tablets tablets={l.tablets} names={names} />
                  </td>
                </tr>
              ))}
            </tbody>
          </table>
          <h3>Fleet readiness</h3>
          <Fleet data={data} names={names} />
          <h3>Arrivals</h3>
          <ArrivalChart report={data.report} lists={data.lists.map((l) => l.list)} />
          <p id="arrival-peak">
            {data.report.peak
              ? `Busiest ${data.report.bucket_minutes} minutes from ${time(data.report.peak.start_ms)}: ${data.report.peak.entries} ${data.report.peak.entries === 1 ? "entry" : "entries"} (${data.report.peak.per_minute.toFixed(1)} a minute)`
              : "No entries yet."}
          </p>
          <h3>Tablets</h3>
          <table id="device-tally">
            <thead>
              <tr>
                <th>Device</th>
                <th>Entries</th>
                <th>Exits</th>
                <th>Duplicates</th>
                <th>Annulled</th>
                <th>Paid at the door</th>
                <th>Median time between scans</th>
              </tr>
            </thead>
            <tbody>
              {data.report.devices.map((d) => (
                <tr key={d.device_id}>
                  <td title={d.device_id}>{deviceName(names, d.device_id)}</td>
                  <td>{d.entries}</td>
                  <td>{d.exits}</td>
                  <td>{d.duplicates}</td>
                  <td>{d.annulled}</td>
                  <td>{d.payments_taken}</td>
                  <td>{gap(d.median_gap_ms)}</td>
                </tr>
              ))}
            </tbody>
          </table>
          <h3>No-shows by ticket type</h3>
          <table id="no-shows">
            <thead>
              <tr>
                <th>Ticket type</th>
                <th>Expected</th>
                <th>Checked in</th>
                <th>No-shows</th>
              </tr>
            </thead>
            <tbody>
              {data.report.ticket_types.map((t) => (
                <tr key={t.ticket_type}>
                  <td>{t.ticket_type || "(none)"}</td>
                  <td>{t.expected}</td>
                  <td>{t.checked_in}</td>
                  <td>{t.no_shows}</td>
                </tr>
              ))}
            </tbody>
          </table>
          <form id="export-form" onSubmit={exportReport}>
            <label>
              Export the check-in report (CSV) to <input id="export-path" value={exportPath} placeholder="/path/to/report.csv" onInput={(e) => setExportPath(e.currentTarget.value)} />
            </label>
            <button
              id="choose-report-file"
              type="button"
              onClick={async () => {
                try {
                  const chosenPath = await save({ defaultPath: "checkin-report.csv", filters: [{ name: "CSV", extensions: ["csv"] }] });
                  if (chosenPath) setExportPath(chosenPath);
                } catch (e) {
                  setError(e);
                }
              }}
            >
              Choose…
            </button>{" "}
            <button id="export-report" type="submit">
              Export
            </button>
            {exported && (
              <span class="ok" id="exported">
                {" "}
                {exported}
              </span>
            )}
          </form>
          {data.other_tablets.length > 0 && (
            <p>
              Tablets on this event without a list: <Tablets tablets={data.other_tablets} names={names} />
            </p>
          )}
          <h3>Recent scans</h3>
          <table id="recent-scans">
            <thead>
              <tr>
                <th>When</th>
                <th>List</th>
                <th>Direction</th>
                <th>Outcome</th>
                <th>Attendee</th>
                <th>Device</th>
              </tr>
            </thead>
            <tbody>
              {data.recent.map((s) => (
                <tr key={s.scan_id}>
                  <td>{time(s.wall_ms)}</td>
                  <td>{s.list_id}</td>
                  <td>{s.direction}</td>
                  <td>
                    {s.outcome}
                    {s.by_signature ? " · by signature" : ""}
                    {s.payment_taken ? " · paid at the door" : ""}
                  </td>
                  <td>{s.attendee_id}</td>
                  <td title={s.device_id}>{deviceName(names, s.device_id)}</td>
                </tr>
              ))}
            </tbody>
          </table>
          <h3>Duplicates to review ({data.duplicates.length})</h3>
          <table id="duplicates">
            <thead>
              <tr>
                <th>Ticket</th>
                <th>Attendee</th>
                <th>Later scan</th>
                <th>First scan</th>
              </tr>
            </thead>
            <tbody>
              {data.duplicates.map((d) => (
                <tr key={d.scan.scan_id}>
                  <td>{d.ticket_code}</td>
                  <td>{d.attendee_name}</td>
                  <td>
                    {time(d.scan.wall_ms)} on {deviceName(names, d.scan.device_id)}
                  </td>
                  <td>{d.original ? `${time(d.original.wall_ms)} on ${deviceName(names, d.original.device_id)}` : "—"}</td>
                </tr>
              ))}
            </tbody>
          </table>
        </div>
      )}
    </section>
  );
}
