// The arrival curve of the live dashboard: counted entries per bucket of
// time, one line per check-in list, drawn by uPlot (a small canvas
// charting library) and redrawn as the dashboard's data changes.

import { useEffect, useRef } from "preact/hooks";
// Before uPlot, which reads the page's language as it loads.
import "./locale";
import uPlot from "uplot";
import "uplot/dist/uPlot.min.css";
import type { CheckinReport } from "./api";
import { arrivalSeries } from "./logic";

const COLOURS = ["#2563eb", "#dc2626", "#16a34a", "#9333ea", "#ea580c", "#0891b2"];

export function ArrivalChart({ report, lists }: { report: CheckinReport; lists: { id: string; name: string }[] }) {
  const box = useRef<HTMLDivElement>(null);
  const plot = useRef<uPlot | null>(null);
  const shape = lists.map((l) => l.id).join("\u0000");

  useEffect(() => {
    if (!box.current) return;
    const { x, series } = arrivalSeries(
      report.arrivals,
      lists.map((l) => l.id),
      report.bucket_minutes,
    );
    const data = [x, ...series] as uPlot.AlignedData;
    if (plot.current) {
      plot.current.setData(data);
      return;
    }
    plot.current = new uPlot(
      {
        width: Math.max(320, box.current.clientWidth || 640),
        height: 220,
        scales: { x: { time: true } },
        axes: [{}, { label: `entries per ${report.bucket_minutes} min` }],
        series: [
          {},
          ...lists.map((l, i) => ({
            label: l.name,
            stroke: COLOURS[i % COLOURS.length],
            width: 2,
            points: { show: true },
          })),
        ],
      },
      data,
      box.current,
    );
  }, [report, shape]);

  // A new set of lists is a new chart.
  useEffect(
    () => () => {
      plot.current?.destroy();
      plot.current = null;
    },
    [shape],
  );

  return <div id="arrival-chart" ref={box} />;
}
