// Attendee import from a CSV file: progress bar while it runs, then the
// rows it refused with their line numbers.

import { open } from "@tauri-apps/plugin-dialog";
import { useEffect, useState } from "preact/hooks";
import { api, on, type ImportProgress, type ImportReport } from "../api";
import { ErrorBox, useEventChoice } from "../components";

export function Import() {
  const { chosen, picker, error: listError } = useEventChoice();
  const [path, setPath] = useState("");
  const [progress, setProgress] = useState<ImportProgress | null>(null);
  const [report, setReport] = useState<ImportReport | null>(null);
  const [error, setError] = useState<unknown>(null);
  const [running, setRunning] = useState(false);

  useEffect(() => {
    const off = on<ImportProgress>("import-progress", setProgress);
    return () => off.then((f) => f());
  }, []);

  async function run(e: Event) {
    e.preventDefault();
    setError(null);
    setReport(null);
    setProgress({ phase: "reading", rows: 0, total: null });
    setRunning(true);
    try {
      setReport(await api.importCsv(chosen, path));
    } catch (err) {
      setError(err);
    } finally {
      setRunning(false);
    }
  }

  const percent = !progress ? 0 : progress.phase === "writing" ? 100 : Math.min(95, Math.log10(progress.rows + 1) * 20);
  return (
    <section aria-labelledby="import-title">
      <h2 id="import-title">Import attendees</h2>
      <p>
        A CSV file with a header row: <code>ticket_code</code>, <code>name</code>, <code>email</code> and optionally <code>ticket_type</code>, <code>attendee_id</code>,{" "}
        <code>lists</code>, <code>revoked</code>, <code>attention</code> (a note staff see at the door), <code>unpaid</code>. Good rows are imported; broken
        rows are listed below with their line numbers.
      </p>
      <ErrorBox error={listError ?? error} />
      <form id="import-form" onSubmit={run}>
        {picker}
        <label>
          CSV file <input id="csv-path" value={path} placeholder="/home/me/attendees.csv" onInput={(e) => setPath(e.currentTarget.value)} />
        </label>
        <button
          id="choose-csv"
          type="button"
          onClick={async () => {
            try {
              // The system's file dialog; the path can still be typed.
              const chosenPath = await open({ multiple: false, directory: false, filters: [{ name: "CSV", extensions: ["csv", "txt"] }] });
              if (typeof chosenPath === "string") setPath(chosenPath);
            } catch (e) {
              setError(e);
            }
          }}
        >
          Choose…
        </button>
        <button id="start-import" type="submit" disabled={running || !chosen || !path.trim()}>
          Import
        </button>
      </form>
      {(running || report) && (
        <div>
          <progress id="import-progress" max={100} value={report ? 100 : percent} aria-label="Import progress" />
          <span id="import-phase">{report ? "done" : progress ? `${progress.phase}: ${progress.rows} rows` : ""}</span>
        </div>
      )}
      {report && (
        <div id="import-report">
          <p id="import-summary">
            Imported {report.imported} attendee{report.imported === 1 ? "" : "s"}; {report.rejected.length} row{report.rejected.length === 1 ? "" : "s"} refused.
          </p>
          {report.rejected.length > 0 && (
            <table id="rejected-rows">
              <thead>
                <tr>
                  <th>Line</th>
                  <th>Problem</th>
                </tr>
              </thead>
              <tbody>
                {report.rejected.map((r) => (
                  <tr key={r.line}>
                    <td>{r.line}</td>
                    <td>{r.message}</td>
                  </tr>
                ))}
              </tbody>
            </table>
          )}
        </div>
      )}
    </section>
  );
}
