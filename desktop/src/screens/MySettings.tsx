// My settings (synced to my other devices), with the server's backup
// history and restore.

import { useEffect, useState } from "preact/hooks";
import { api, on, type Backup, type Settings } from "../api";
import { ErrorBox, time } from "../components";

export function MySettings() {
  const [document, setDocument] = useState<string | null>(null);
  const [settings, setSettings] = useState<Settings | null>(null);
  const [backups, setBackups] = useState<Backup[] | null>(null);
  const [error, setError] = useState<unknown>(null);
  const [message, setMessage] = useState<string | null>(null);

  async function reload() {
    try {
      const mine = await api.mySettings();
      setDocument(mine.document);
      setSettings(mine.settings);
      setError(null);
    } catch (e) {
      setError(e);
    }
  }
  async function reloadBackups() {
    try {
      setBackups(await api.settingsBackups());
    } catch (e) {
      setError(e);
    }
  }
  useEffect(() => {
    reload();
    reloadBackups();
  }, []);
  useEffect(() => {
    const off = on<{ document: string }>("doc-changed", (c) => {
      if (!c.document || c.document === document) reload();
    });
    return () => off.then((f) => f());
  }, [document]);

  async function set(key: string, value: string | boolean) {
    try {
      await api.setSetting(key, value);
      await reload();
      setMessage("Saved; your other devices get it when they sync.");
    } catch (e) {
      setError(e);
    }
  }

  return (
    <section aria-labelledby="settings-title">
      <h2 id="settings-title">My settings</h2>
      <ErrorBox error={error} />
      {message && <p class="ok">{message}</p>}
      {settings && (
        <form id="settings-form" onSubmit={(e) => e.preventDefault()}>
          <label>
            Theme{" "}
            <select id="setting-theme" value={settings.theme} onChange={(e) => set("theme", e.currentTarget.value)}>
              <option value="system">system</option>
              <option value="light">light</option>
              <option value="dark">dark</option>
            </select>
          </label>
          <label>
            Language{" "}
            <select id="setting-language" value={settings.language} onChange={(e) => set("language", e.currentTarget.value)}>
              <option value="en">English</option>
              <option value="de">Deutsch</option>
              <option value="fr">Français</option>
              <option value="pt-BR">Português (Brasil)</option>
            </select>
          </label>
          <label class="check">
            <input id="setting-sounds" type="checkbox" checked={settings.sounds} onChange={(e) => set("sounds", e.currentTarget.checked)} /> Sounds
          </label>
          <label class="check">
            <input id="setting-notifications" type="checkbox" checked={settings.notifications} onChange={(e) => set("notifications", e.currentTarget.checked)} /> Notifications
          </label>
        </form>
      )}
      <h3>Backups on the server</h3>
      <button id="reload-backups" onClick={reloadBackups}>
        Refresh
      </button>
      {backups && (
        <table id="backups-table">
          <thead>
            <tr>
              <th>Taken</th>
              <th>Theme</th>
              <th>Language</th>
              <th>Sounds</th>
              <th />
            </tr>
          </thead>
          <tbody>
            {backups.map((b) => (
              <tr key={b.id} data-theme={b.settings.theme}>
                <td>{time(b.taken_ms)}</td>
                <td>{b.settings.theme}</td>
                <td>{b.settings.language}</td>
                <td>{b.settings.sounds ? "on" : "off"}</td>
                <td>
                  <button
                    class="restore"
                    onClick={async () => {
                      try {
                        await api.restoreSettingsBackup(b.id);
                        setMessage(`Restored the version of ${time(b.taken_ms)}; every device gets it.`);
                        await reloadBackups();
                      } catch (e) {
                        setError(e);
                      }
                    }}
                  >
                    Restore
                  </button>
                </td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
      {backups && backups.length === 0 && <p>No backups yet (one is taken shortly after a change).</p>}
    </section>
  );
}
