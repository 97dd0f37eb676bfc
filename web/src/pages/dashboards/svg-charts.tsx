/**
 * The dashboards' charts drawn as plain SVG: bars, lines, stacked areas and a donut, with the props the tabs
 * pass (a subset of @mantine/charts', whose recharts base weighed 120 KB of brotli on the Dashboards page and
 * put it over the 250 KB budget of JavaScript per page; issue 17 item 3). Each chart is a picture only
 * (aria-hidden): its figure's caption says the same in words (ChartCard).
 */
import { Box, Group, getThemeColor, Text, useMantineTheme } from "@mantine/core";
import type { ReactNode } from "react";

type Row = Record<string, unknown>;
interface Series {
  name: string;
  label?: string;
  color: string;
}
interface CartesianProps {
  h: number;
  data: Row[];
  dataKey: string;
  series: Series[];
  withLegend?: boolean;
  valueFormatter?: (value: number) => string;
  /** Accepted for compatibility with @mantine/charts' props; the SVG charts need none of them. */
  tickLine?: string;
  yAxisProps?: { allowDecimals?: boolean; width?: number };
  xAxisProps?: Record<string, unknown>;
  connectNulls?: boolean;
  withDots?: boolean;
  type?: "default" | "stacked";
}

const WIDTH = 600;
const PAD = { top: 8, right: 8, bottom: 22, left: 44 };

const numberOf = (value: unknown): number | null =>
  typeof value === "number" && Number.isFinite(value) ? value : null;

/** A round upper bound for the y axis (1, 2 or 5 times a power of ten). */
function niceMax(max: number): number {
  if (max <= 0) return 1;
  const power = 10 ** Math.floor(Math.log10(max));
  for (const step of [1, 2, 5, 10]) if (step * power >= max) return step * power;
  return 10 * power;
}

function useColor() {
  const theme = useMantineTheme();
  return (color: string) => getThemeColor(color, theme);
}

function Legend({ series }: { series: Series[] }) {
  const color = useColor();
  return (
    <Group gap="md" justify="center" mt={4} aria-hidden>
      {series.map((s) => (
        <Group gap={4} key={s.name} wrap="nowrap">
          <Box w={10} h={10} style={{ background: color(s.color), borderRadius: 2 }} />
          <Text size="xs">{s.label ?? s.name}</Text>
        </Group>
      ))}
    </Group>
  );
}

/** The axes, grid lines and x labels shared by the cartesian charts; `children` draws the data. */
function Frame({
  h,
  labels,
  max,
  format,
  integers,
  children,
}: {
  h: number;
  labels: string[];
  max: number;
  format: (value: number) => string;
  /** Counts: no tick between whole numbers. */
  integers?: boolean | undefined;
  children: ReactNode;
}) {
  const plotH = h - PAD.top - PAD.bottom;
  const plotW = WIDTH - PAD.left - PAD.right;
  const every = Math.max(1, Math.ceil(labels.length / 8));
  return (
    <svg viewBox={`0 0 ${WIDTH} ${h}`} width="100%" height={h} aria-hidden="true" style={{ display: "block" }}>
      {[0, 0.5, 1].map((f) => {
        if (integers && !Number.isInteger(max * f)) return null;
        const y = PAD.top + plotH * (1 - f);
        return (
          <g key={f}>
            <line x1={PAD.left} x2={WIDTH - PAD.right} y1={y} y2={y} stroke="#dee2e6" strokeDasharray="3 3" />
            <text x={PAD.left - 6} y={y + 4} textAnchor="end" fontSize={11} fill="#495057">
              {format(max * f)}
            </text>
          </g>
        );
      })}
      {labels.map((label, i) =>
        i % every === 0 ? (
          <text
            key={`${label}-${i}`}
            x={PAD.left + (plotW * (i + 0.5)) / labels.length}
            y={h - 6}
            textAnchor="middle"
            fontSize={11}
            fill="#495057"
          >
            {label}
          </text>
        ) : null,
      )}
      {children}
    </svg>
  );
}

const plain = (allowDecimals: boolean | undefined) => (value: number) =>
  allowDecimals === false ? String(Math.round(value)) : String(Math.round(value * 100) / 100);

export function BarChart({ h, data, dataKey, series, withLegend, valueFormatter, yAxisProps }: CartesianProps) {
  const color = useColor();
  const labels = data.map((row) => String(row[dataKey] ?? ""));
  const values = data.map((row) => series.map((s) => numberOf(row[s.name]) ?? 0));
  const max = niceMax(Math.max(0, ...values.flat()));
  const plotH = h - PAD.top - PAD.bottom;
  const slot = (WIDTH - PAD.left - PAD.right) / Math.max(1, data.length);
  const barW = (slot * 0.7) / series.length;
  return (
    <div>
      <Frame
        h={h}
        labels={labels}
        max={max}
        format={valueFormatter ?? plain(yAxisProps?.allowDecimals)}
        integers={yAxisProps?.allowDecimals === false}
      >
        {values.map((row, i) =>
          row.map((value, k) => {
            const barH = (plotH * value) / max;
            return (
              <rect
                key={`${i}-${k}`}
                x={PAD.left + slot * i + slot * 0.15 + barW * k}
                y={PAD.top + plotH - barH}
                width={barW}
                height={barH}
                fill={color(series[k]!.color)}
              />
            );
          }),
        )}
      </Frame>
      {withLegend && <Legend series={series} />}
    </div>
  );
}

/** Points of one series; null values are skipped and the line joins its neighbours. */
function pointsOf(values: (number | null)[], max: number, h: number): string {
  const plotH = h - PAD.top - PAD.bottom;
  const slot = (WIDTH - PAD.left - PAD.right) / Math.max(1, values.length);
  return values
    .map((value, i) =>
      value === null ? null : `${PAD.left + slot * (i + 0.5)},${PAD.top + plotH - (plotH * value) / max}`,
    )
    .filter((p): p is string => p !== null)
    .join(" ");
}

export function LineChart({ h, data, dataKey, series, withLegend, valueFormatter, yAxisProps }: CartesianProps) {
  const color = useColor();
  const labels = data.map((row) => String(row[dataKey] ?? ""));
  const lines = series.map((s) => data.map((row) => numberOf(row[s.name])));
  const max = niceMax(Math.max(0, ...lines.flat().filter((v): v is number => v !== null)));
  return (
    <div>
      <Frame
        h={h}
        labels={labels}
        max={max}
        format={valueFormatter ?? plain(yAxisProps?.allowDecimals)}
        integers={yAxisProps?.allowDecimals === false}
      >
        {lines.map((values, k) => (
          <polyline
            key={series[k]!.name}
            points={pointsOf(values, max, h)}
            fill="none"
            stroke={color(series[k]!.color)}
            strokeWidth={2}
          />
        ))}
      </Frame>
      {withLegend && <Legend series={series} />}
    </div>
  );
}

/** Stacked areas: each series drawn on top of the ones before it. */
export function AreaChart({ h, data, dataKey, series, withLegend, valueFormatter, yAxisProps }: CartesianProps) {
  const color = useColor();
  const labels = data.map((row) => String(row[dataKey] ?? ""));
  const layers = series.map((s) => data.map((row) => numberOf(row[s.name]) ?? 0));
  const tops = layers.map((_, k) => data.map((__, i) => layers.slice(0, k + 1).reduce((sum, l) => sum + l[i]!, 0)));
  const max = niceMax(Math.max(0, ...(tops.at(-1) ?? [])));
  const plotH = h - PAD.top - PAD.bottom;
  const slot = (WIDTH - PAD.left - PAD.right) / Math.max(1, data.length);
  const x = (i: number) => PAD.left + slot * (i + 0.5);
  const y = (value: number) => PAD.top + plotH - (plotH * value) / max;
  return (
    <div>
      <Frame
        h={h}
        labels={labels}
        max={max}
        format={valueFormatter ?? plain(yAxisProps?.allowDecimals)}
        integers={yAxisProps?.allowDecimals === false}
      >
        {tops.map((top, k) => {
          const bottom = k === 0 ? data.map(() => 0) : tops[k - 1]!;
          const upper = top.map((v, i) => `${x(i)},${y(v)}`);
          const lower = bottom.map((v, i) => `${x(i)},${y(v)}`).reverse();
          return (
            <polygon
              key={series[k]!.name}
              points={[...upper, ...lower].join(" ")}
              fill={color(series[k]!.color)}
              fillOpacity={0.6}
              stroke={color(series[k]!.color)}
            />
          );
        })}
      </Frame>
      {withLegend && <Legend series={series} />}
    </div>
  );
}

export function DonutChart({
  size,
  thickness,
  chartLabel,
  data,
  mx,
}: {
  size: number;
  thickness: number;
  chartLabel?: string;
  data: { name: string; value: number; color: string }[];
  mx?: string;
  withLabels?: boolean;
  labelsType?: string;
}) {
  const color = useColor();
  const total = data.reduce((sum, d) => sum + Math.max(0, d.value), 0);
  const r = (size - thickness) / 2;
  const circumference = 2 * Math.PI * r;
  let offset = 0;
  return (
    <Box mx={mx} w={size}>
      <svg viewBox={`0 0 ${size} ${size}`} width={size} height={size} aria-hidden="true">
        <g transform={`rotate(-90 ${size / 2} ${size / 2})`}>
          {total === 0 ? (
            <circle cx={size / 2} cy={size / 2} r={r} fill="none" stroke="#dee2e6" strokeWidth={thickness} />
          ) : (
            data.map((d) => {
              const length = (circumference * Math.max(0, d.value)) / total;
              const arc = (
                <circle
                  key={d.name}
                  cx={size / 2}
                  cy={size / 2}
                  r={r}
                  fill="none"
                  stroke={color(d.color)}
                  strokeWidth={thickness}
                  strokeDasharray={`${length} ${circumference - length}`}
                  strokeDashoffset={-offset}
                />
              );
              offset += length;
              return arc;
            })
          )}
        </g>
        {chartLabel && (
          <text x={size / 2} y={size / 2 + 5} textAnchor="middle" fontSize={14} fontWeight={700} fill="#212529">
            {chartLabel}
          </text>
        )}
      </svg>
      <Legend series={data.map((d) => ({ name: d.name, label: `${d.name}: ${d.value}`, color: d.color }))} />
    </Box>
  );
}
