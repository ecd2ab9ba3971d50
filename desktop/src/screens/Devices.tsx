// Devices: who signed in where, online now, last seen; revoke one.

import { useEffect, useState } from "preact/hooks";
import { api, type Device } from "../api";
import { ErrorBox, time } from "../components";

export function Devices() {
  const [devices, setDevices] = useState<Device[]>([]);
  const [emails, setEmails] = useState<Record<string, string>>({});
  const [error, setError] = useState<unknown>(null);
  const [confirming, setConfirming] = useState<string | null>(null);

  async function reload() {
    try {
      const [list, users] = await Promise.all([api.devices(), api.users()]);
      setDevices(list);
      setEmails(Object.fromEntries(users.map((u) => [u.id, u.email])));
      setError(null);
    } catch (e) {
      setError(e);
    }
  }
  useEffect(() => {
    reload();
    const poll = setInterval(reload, 5000);
    return () => clearInterval(poll);
  }, []);

  return (
    <section aria-labelledby="devices-title">
      <h2 id="devices-title">Devices</h2>
      <ErrorBox error={error} />
      <table id="devices-table">
        <thead>
          <tr>
            <th>Device</th>
            <th>User</th>
            <th>App</th>
            <th>Online</th>
            <th>Last seen</th>
            <th />
          </tr>
        </thead>
        <tbody>
          {devices.map((d) => (
            <tr key={d.id} data-device={d.name} class={d.revoked_ms ? "revoked" : ""}>
              <td>{d.name}</td>
              <td title={d.user_id}>{emails[d.user_id] ?? d.user_id}</td>
              <td>{d.app_version}</td>
              <td>{d.online ? "online" : "offline"}</td>
              <td>{time(d.last_seen_ms)}</td>
              <td>
                {d.revoked_ms ? (
                  <span class="status">revoked {time(d.revoked_ms)}</span>
                ) : confirming === d.id ? (
                  <span>
                    <button
                      class="confirm-revoke"
                      onClick={async () => {
                        try {
                          await api.revokeDevice(d.id);
                          setConfirming(null);
                          await reload();
                        } catch (e) {
                          setError(e);
                        }
                      }}
                    >
                      Revoke and wipe
                    </button>{" "}
                    <button onClick={() => setConfirming(null)}>Keep</button>
                  </span>
                ) : (
                  <button class="revoke" onClick={() => setConfirming(d.id)}>
                    Revoke…
                  </button>
                )}
              </td>
            </tr>
          ))}
        </tbody>
      </table>
    </section>
  );
}
