// Attendee search: ticket code prefix, or any part of a name or email.

import { useEffect, useState } from "preact/hooks";
import { api, type Attendee } from "../api";
import { ErrorBox, useEventChoice } from "../components";

export function Search() {
  const { chosen, picker, error: listError } = useEventChoice();
  const [query, setQuery] = useState("");
  const [results, setResults] = useState<Attendee[]>([]);
  const [error, setError] = useState<unknown>(null);

  useEffect(() => {
    if (!chosen || !query.trim()) return setResults([]);
    let current = true;
    api
      .search(chosen, query)
      .then((r) => current && (setResults(r), setError(null)))
      .catch((e) => current && setError(e));
    return () => {
      current = false;
    };
  }, [chosen, query]);

  return (
    <section aria-labelledby="search-title">
      <h2 id="search-title">Search attendees</h2>
      <ErrorBox error={listError ?? error} />
      {picker}
      <label>
        Search <input id="search-query" type="search" value={query} placeholder="ticket code, name or email" onInput={(e) => setQuery(e.currentTarget.value)} autoFocus />
      </label>
      <table id="search-results">
        <thead>
          <tr>
            <th>Ticket</th>
            <th>Name</th>
            <th>Email</th>
            <th>Type</th>
            <th>Valid</th>
          </tr>
        </thead>
        <tbody>
          {results.map((a) => (
            <tr key={a.attendee_id}>
              <td>{a.ticket_code}</td>
              <td>{a.name}</td>
              <td>{a.email}</td>
              <td>{a.ticket_type}</td>
              <td>{a.revoked ? "revoked" : "yes"}</td>
            </tr>
          ))}
        </tbody>
      </table>
      {query.trim() && results.length === 0 && <p id="no-results">No attendee matches.</p>}
    </section>
  );
}
