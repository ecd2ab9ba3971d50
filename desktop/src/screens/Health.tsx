// Server health: the server's own report (GET /api/status), refreshed every
// few seconds, with what needs attention on top.

import { useEffect, useState } from "preact/hooks";
import { api, type ServerStatus } from "../api";
import { ErrorBox } from "../components";
import { duration, healthConcerns } from "../logic";

const REFRESH_MS = 5000;

function bytes(n: number): string {
  if (n < 1024 * 1024) return `${Math.max(1, Math.round(n / 1024))} KiB`;
  return `${(n / (1024 * 1024)).toFixed(1)} MiB`;
}

export function Health() {
  const [status, setStatus] = useState<ServerStatus | null>(null);
  const [error, setError] = useState<unknown>(null);

  useEffect(() => {
    let live = true;
    async function load() {
      try {
        const next = await api.serverStatus();
        if (live) {
          setStatus(next);
          setError(null);
        }
      } catch (e) {
        if (live) setError(e);
      }
    }
    load();
    const poll = setInterval(load, REFRESH_MS);
    return () => {
      live = false;
      clearInterval(poll);
    };
  }, []);

  const concerns = status ? healthConcerns(status) : [];
  const { backups } = status ?? { backups: null };
  return (
    <section aria-labelledby="health-title">
      <h2 id="health-title">Server health</h2>
      <ErrorBox error={error} />
      {status && (
        <>
          {concerns.length === 0 ? (
            <p id="health-summary" class="status ok" role="status">
              All well.
            </p>
          ) : (
            <ul id="health-summary" class="concerns" role="alert">
              {concerns.map((c) => (
                <li key={c}>{c}</li>
              ))}
            </ul>
          )}
          <table id="health-table">
            <tbody>
              <tr data-row="version">
                <th>Version</th>
                <td>
                  {status.version} ({status.git})
                </td>
              </tr>
              <tr data-row="uptime">
                <th>Running for</th>
                <td title={status.started_at}>{duration(status.uptime_s)}</td>
              </tr>
              <tr data-row="store">
                <th>Store</th>
                <td>
                  {status.store.kind}, answered in {status.store.latency_ms.toFixed(1)} ms, schema {status.store.schema_version}
                  {status.store.migrations_pending ? ` (expects ${status.store.expected_version})` : ""}
                </td>
              </tr>
              <tr data-row="documents">
                <th>Documents loaded</th>
                <td>{status.documents_loaded}</td>
              </tr>
              <tr data-row="connections">
                <th>Sync connections</th>
                <td>{status.connections}</td>
              </tr>
              <tr data-row="devices">
                <th>Devices online</th>
                <td>{status.devices_online}</td>
              </tr>
              <tr data-row="backups">
                <th>Backups</th>
                <td>
                  {backups && !backups.scheduled
                    ? "not scheduled here"
                    : backups?.last
                      ? `newest ${duration(backups.last.age_s)} ago (${bytes(backups.last.bytes)}), ${backups.count} kept, every ${duration(backups.every_s ?? 0)}`
                      : `none yet, every ${duration(backups?.every_s ?? 0)}`}
                </td>
              </tr>
              <tr data-row="alerts">
                <th>Security alerts (24 h)</th>
                <td>{status.security_alerts_24h}</td>
              </tr>
            </tbody>
          </table>
        </>
      )}
    </section>
  );
}
