// Users, roles and staff assignments.

import { useEffect, useState } from "preact/hooks";
import { api, type User } from "../api";
import { ErrorBox, useStepUp } from "../components";
import { parseList } from "../logic";

export function Users() {
  const [users, setUsers] = useState<User[]>([]);
  const [error, setError] = useState<unknown>(null);
  const [form, setForm] = useState({ email: "", role: "staff", password: "" });
  const [assign, setAssign] = useState<Record<string, string>>({});
  const { run, dialog } = useStepUp();

  async function reload() {
    try {
      setUsers(await api.users());
      setError(null);
    } catch (e) {
      setError(e);
    }
  }
  useEffect(() => {
    reload();
  }, []);

  async function act(action: () => Promise<unknown>) {
    try {
      await run(action);
      await reload();
    } catch (e) {
      setError(e);
    }
  }

  return (
    <section aria-labelledby="users-title">
      <h2 id="users-title">Users</h2>
      <ErrorBox error={error} />
      {dialog}
      <table id="users-table">
        <thead>
          <tr>
            <th>Email</th>
            <th>Role</th>
            <th>2FA</th>
            <th>Status</th>
            <th>Events (staff)</th>
          </tr>
        </thead>
        <tbody>
          {users.map((u) => (
            <tr key={u.id} data-email={u.email}>
              <td>{u.email}</td>
              <td>
                <select aria-label={`Role of ${u.email}`} class="role" value={u.role} onChange={(e) => {
                    // Read now: the action may run again after a step-up, when the event is gone.
                    const role = e.currentTarget.value;
                    act(() => api.updateUser(u.id, role, null));
                  }}>
                  <option value="admin">admin</option>
                  <option value="staff">staff</option>
                  <option value="member">member</option>
                </select>
              </td>
              <td>{u.totp_enrolled ? "enrolled" : "not yet"}</td>
              <td>
                <button onClick={() => act(() => api.updateUser(u.id, null, !u.disabled))}>{u.disabled ? "Enable" : "Disable"}</button>
              </td>
              <td>
                <form
                  class="assign"
                  onSubmit={(e) => {
                    e.preventDefault();
                    act(() => api.setUserEvents(u.id, parseList(assign[u.id] ?? u.events.join(", "))));
                  }}
                >
                  <input aria-label={`Events of ${u.email}`} class="events" value={assign[u.id] ?? u.events.join(", ")} onInput={(e) => setAssign({ ...assign, [u.id]: e.currentTarget.value })} />
                  <button type="submit">Assign</button>
                </form>
              </td>
            </tr>
          ))}
        </tbody>
      </table>
      <form
        id="new-user"
        onSubmit={(e) => {
          e.preventDefault();
          act(async () => {
            await api.createUser(form.email, form.role, form.password);
            setForm({ email: "", role: "staff", password: "" });
          });
        }}
      >
        <h3>New user</h3>
        <label>
          Email <input id="new-user-email" type="email" value={form.email} onInput={(e) => setForm({ ...form, email: e.currentTarget.value })} />
        </label>
        <label>
          Role{" "}
          <select id="new-user-role" value={form.role} onChange={(e) => setForm({ ...form, role: e.currentTarget.value })}>
            <option value="staff">staff</option>
            <option value="member">member</option>
            <option value="admin">admin</option>
          </select>
        </label>
        <label>
          First password <input id="new-user-password" type="password" value={form.password} onInput={(e) => setForm({ ...form, password: e.currentTarget.value })} />
        </label>
        <button id="create-user" type="submit">
          Create
        </button>
      </form>
    </section>
  );
}
