// The live check-in dashboard: counts per list as scans arrive from tablets,
// recent scans, duplicates to review, tablets online per list.

import { useEffect, useState } from "preact/hooks";
import { api, on, type Dashboard as Data, type Tablet } from "../api";
import { ErrorBox, time, useEventChoice } from "../components";
import { ago } from "../logic";

function Tablets({ tablets }: { tablets: Tablet[] }) {
  if (tablets.length === 0) return <span class="muted">none</span>;
  const now = Date.now();
  return (
    <span>
      {tablets.map((t) => (
        <span key={t.device_id} class="tablet" title={t.device_id}>
          {t.device_id.slice(0, 8)} (synced {t.last_synced_ms ? ago(t.last_synced_ms, now) : "—"})
        </span>
      ))}
    </span>
  );
}

export function Dashboard() {
  const { chosen, picker, error: listError } = useEventChoice();
  const [data, setData] = useState<Data | null>(null);
  const [error, setError] = useState<unknown>(null);

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
                    <Tablets tablets={l.tablets} />
                  </td>
                </tr>
              ))}
            </tbody>
          </table>
          {data.other_tablets.length > 0 && (
            <p>
              Tablets on this event without a list: <Tablets tablets={data.other_tablets} />
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
                  <td>{s.outcome}</td>
                  <td>{s.attendee_id}</td>
                  <td title={s.device_id}>{s.device_id.slice(0, 8)}</td>
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
                    {time(d.scan.wall_ms)} on {d.scan.device_id.slice(0, 8)}
                  </td>
                  <td>{d.original ? `${time(d.original.wall_ms)} on ${d.original.device_id.slice(0, 8)}` : "—"}</td>
                </tr>
              ))}
            </tbody>
          </table>
        </div>
      )}
    </section>
  );
}
