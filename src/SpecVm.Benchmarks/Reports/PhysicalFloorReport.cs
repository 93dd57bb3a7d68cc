using System.Globalization;
using System.Text;
using SpecVm.Scaling;

namespace SpecVm.Benchmarks.Reports;

/// <summary>
/// The report's "Physical floor" section (issue #14, "the limit in every report"): per fault workload, the floor
/// measured in the same run (<see cref="ScalingResult.Floors"/>: pinned threads zeroing or copying 4 KiB pages), each
/// series' throughput as a fraction of it, and the two targets: a one-CPU fault costs at most
/// <see cref="FaultTimeTarget"/>× one page's zeroing (copying), and the model's speedup from 1 to N CPUs is at least
/// <see cref="SpeedupTarget"/>× the floor's. Measured points only: the floor is never predicted. Series come from the
/// points (<see cref="Series"/>), never by name.
/// </summary>
internal static class PhysicalFloorReport
{
    /// <summary>A one-CPU fault should take at most this multiple of one page's zeroing (copying) time.</summary>
    public const double FaultTimeTarget = 1.5;

    /// <summary>A series' speedup from 1 to N threads should reach at least this share of the floor's.</summary>
    public const double SpeedupTarget = 0.95;

    private static readonly CultureInfo Inv = CultureInfo.InvariantCulture;

    /// <summary>The legend text of a floor line: "physical floor (zeroing)" or "physical floor (copying)".</summary>
    public static string Label(FloorPoint f) => f.Kind == "copy" ? "physical floor (copying)" : "physical floor (zeroing)";

    /// <summary>
    /// One-CPU fault time over one page's zero (copy) time: (1 / fault ops/s at 1) / (1 / floor ops/s at 1), that is the
    /// floor's ops/s over the fault's; null without both.
    /// </summary>
    public static double? FaultTimeRatio(ScalingPoint one, FloorPoint floorOne) =>
        one.OpsPerSecond > 0 && floorOne.OpsPerSecond > 0 ? floorOne.OpsPerSecond / one.OpsPerSecond : null;

    /// <summary>The series' speedup X(N)/X(1) over the floor's F(N)/F(1); null without all four.</summary>
    public static double? SpeedupRatio(ScalingPoint one, ScalingPoint n, FloorPoint floorOne, FloorPoint floorN) =>
        one.OpsPerSecond > 0 && floorOne.OpsPerSecond > 0 && floorN.OpsPerSecond > 0
            ? n.OpsPerSecond / one.OpsPerSecond / (floorN.OpsPerSecond / floorOne.OpsPerSecond)
            : null;

    public static void Append(StringBuilder sb, ScalingResult r)
    {
        if (r.Floors is not { Count: > 0 } floors)
        {
            return; // Not measured: --no-floor, a prediction, no fault workload, or a result from before the floor.
        }

        var workloads = floors.Select(f => f.Workload).Distinct().Where(w => r.Points.Any(p => p.Workload == w && !Series.IsPredicted(p))).ToList();
        if (workloads.Count == 0)
        {
            return;
        }

        sb.AppendLine("## Physical floor");
        sb.AppendLine();
        sb.AppendLine("The limit of a fault, measured in the same run at the same thread counts: pinned threads (as the points' CPUs are) each zeroing "
            + "4 KiB pages — copying them, page to page, for a copy-on-write workload — in memory of their own the size of the workload's per-thread "
            + "working set, with the model's page kernels, for the same warm-up and window. No fault handler can beat it; each series is shown as a "
            + "fraction of it (1 = the fault costs no more than its page's zeroing). Targets: one-CPU fault time ≤ "
            + string.Create(Inv, $"{FaultTimeTarget:0.0#}× one page's zero (copy) time, that is floor ops/s ÷ fault ops/s at 1 thread; ")
            + string.Create(Inv, $"speedup from 1 to N threads ≥ {SpeedupTarget:0.0#}× the floor's, at the largest N measured. ")
            + "On a shared host both sides of every ratio are measured in the same passes, so a slow spell touches both, though not equally.");
        sb.AppendLine();
        foreach (string workload in workloads)
        {
            Workload(sb, r, workload, floors.Where(f => f.Workload == workload).OrderBy(f => f.Threads).ToList());
        }
    }

    private static void Workload(StringBuilder sb, ScalingResult r, string workload, List<FloorPoint> floors)
    {
        var series = r.Points.Where(p => p.Workload == workload && !Series.IsPredicted(p))
            .GroupBy(Series.Label)
            .Select(g => (Label: g.Key, Points: g.OrderBy(p => p.Threads).ToList()))
            .OrderBy(s => s.Points[0].Native ? int.MaxValue : Series.ColorIndex(r, s.Points[0].Strategy))
            .ToList();
        FloorPoint first = floors[0];
        string unit = r.Points.First(p => p.Workload == workload).OperationUnit;
        sb.AppendLine(Inv, $"### {workload}: {Label(first)}, {first.BytesPerThread >> 20} MiB per thread");
        sb.AppendLine();
        sb.Append(Inv, $"| threads | floor, pages/s (± SD) |");
        foreach (var s in series)
        {
            sb.Append(Inv, $" {s.Label} / floor |");
        }

        sb.AppendLine();
        sb.Append("|---:|---:|");
        sb.Append(string.Concat(Enumerable.Repeat("---:|", series.Count)));
        sb.AppendLine();
        foreach (FloorPoint f in floors)
        {
            sb.Append(Inv, $"| {f.Threads} | {f.OpsPerSecond:N0} ± {f.OpsPerSecondStdDev:N0} |");
            foreach (var s in series)
            {
                ScalingPoint? p = s.Points.Find(x => x.Threads == f.Threads);
                sb.Append(p == null || f.OpsPerSecond <= 0 ? " – |" : string.Create(Inv, $" {p.OpsPerSecond / f.OpsPerSecond:0.000} |"));
            }

            sb.AppendLine();
        }

        sb.AppendLine();
        FloorPoint? floorOne = floors.Find(f => f.Threads == 1);
        FloorPoint floorN = floors[^1];
        if (floorOne == null)
        {
            sb.AppendLine("No 1-thread floor: the targets need one.");
            sb.AppendLine();
            return;
        }

        string work = first.Kind == "copy" ? "copy" : "zero";
        sb.AppendLine(Inv, $"Floor at 1 thread: {floorOne.OpsPerSecond:N0} pages/s, {1e9 / floorOne.OpsPerSecond:0} ns to {work} one page.");
        sb.AppendLine();
        sb.AppendLine("| check | series | target | measured | verdict |");
        sb.AppendLine("|---|---|---:|---|---|");
        foreach (var s in series)
        {
            ScalingPoint? one = s.Points.Find(p => p.Threads == 1);
            if (one == null)
            {
                continue;
            }

            if (FaultTimeRatio(one, floorOne) is double t)
            {
                sb.AppendLine(Inv, $"| 1-CPU fault time / one page's {work} time | {s.Label} | ≤ {FaultTimeTarget:0.0#} | {t:0.000} ({1e9 / one.OpsPerSecond:0} ns per {Singular(unit)} vs {1e9 / floorOne.OpsPerSecond:0} ns) | {(t <= FaultTimeTarget ? "met" : "missed")} |");
            }

            ScalingPoint? n = s.Points.Find(p => p.Threads == floorN.Threads);
            if (floorN.Threads > 1 && n != null && SpeedupRatio(one, n, floorOne, floorN) is double q)
            {
                double model = n.OpsPerSecond / one.OpsPerSecond, floor = floorN.OpsPerSecond / floorOne.OpsPerSecond;
                sb.AppendLine(Inv, $"| speedup 1→{floorN.Threads} / floor's speedup | {s.Label} | ≥ {SpeedupTarget:0.0#} | {q:0.000} ({model:0.00}× vs {floor:0.00}×) | {(q >= SpeedupTarget ? "met" : "missed")} |");
            }
        }

        sb.AppendLine();
    }

    /// <summary>"page touched" for "pages touched": the unit of one operation.</summary>
    private static string Singular(string unit)
    {
        int space = unit.IndexOf(' ', StringComparison.Ordinal);
        string head = space < 0 ? unit : unit[..space];
        return head.EndsWith('s') ? head[..^1] + (space < 0 ? string.Empty : unit[space..]) : unit;
    }
}
