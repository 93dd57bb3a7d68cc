using System.Globalization;
using System.Text;
using SpecVm.Scaling;

namespace SpecVm.Benchmarks.Reports;

/// <summary>
/// The report's "Cache lines per fault" section (issue #17): for each workload's predicted points at the smallest and
/// the largest simulated CPU count, the accesses per fault to each kind of cache line the model touched and how many of
/// them found the line in another CPU's cache, side by side per strategy. Line kinds come from the data
/// (<see cref="ScalingPoint.LinesPerFault"/>), never spelt here.
/// </summary>
internal static class LinesPerFault
{
    private static readonly CultureInfo Inv = CultureInfo.InvariantCulture;

    public static void Append(StringBuilder sb, ScalingResult r)
    {
        var points = r.Points.Where(p => p.LinesPerFault is { Count: > 0 }).ToList();
        if (points.Count == 0)
        {
            return;
        }

        sb.AppendLine("## Cache lines per fault (predicted)");
        sb.AppendLine();
        sb.AppendLine("What every fault costs in shared memory traffic, from the virtual-time runs: accesses per fault to each kind of cache line "
            + "(loads, stores and read-modify-writes together), and in brackets the expected transfers among them (accesses that found the line "
            + "in another CPU's cache). Over the whole simulated run, warm-up included (from the region of interest on, for a workload that marks one), "
            + "so a workload's other operations (mmap, munmap, madvise) are spread over its faults. Rows by transfers at the largest CPU count.");
        sb.AppendLine();
        List<string> order = Series.StrategyOrder(r).ToList();
        foreach (var byWorkload in points.GroupBy(p => p.Workload))
        {
            var counts = byWorkload.Select(p => p.Threads).Distinct().Order().ToList();
            foreach (int n in counts.Count > 1 ? new[] { counts[0], counts[^1] } : new[] { counts[0] })
            {
                var columns = byWorkload.Where(p => p.Threads == n).OrderBy(p => Rank(order, p.Strategy)).ToList();
                var kinds = columns.SelectMany(p => p.LinesPerFault!.Keys).Distinct()
                    .OrderByDescending(k => columns.Max(p => p.LinesPerFault!.GetValueOrDefault(k)?.Transfers ?? 0))
                    .ThenBy(k => k, StringComparer.Ordinal)
                    .ToList();
                sb.AppendLine(Inv, $"### {byWorkload.Key}, {n} simulated CPU{(n == 1 ? string.Empty : "s")}");
                sb.AppendLine();
                sb.AppendLine("| line | " + string.Join(" | ", columns.Select(p => p.Strategy)) + " |");
                sb.AppendLine("|---|" + string.Concat(columns.Select(_ => "---:|")));
                foreach (string kind in kinds)
                {
                    sb.AppendLine($"| {kind} | " + string.Join(" | ", columns.Select(p => Cell(p.LinesPerFault!.GetValueOrDefault(kind)))) + " |");
                }

                sb.AppendLine("| **all lines** | " + string.Join(" | ", columns.Select(p => Cell(Total(p)))) + " |");
                sb.AppendLine();
            }
        }
    }

    private static int Rank(List<string> order, string strategy)
    {
        int i = order.IndexOf(strategy);
        return i < 0 ? int.MaxValue : i;
    }

    private static SharedLineOps Total(ScalingPoint p) => new()
    {
        Loads = p.LinesPerFault!.Values.Sum(o => o.Loads),
        Stores = p.LinesPerFault!.Values.Sum(o => o.Stores),
        Rmws = p.LinesPerFault!.Values.Sum(o => o.Rmws),
        Transfers = p.LinesPerFault!.Values.Sum(o => o.Transfers),
    };

    private static string Cell(SharedLineOps? o) =>
        o == null ? "–" : string.Create(Inv, $"{o.Loads + o.Stores + o.Rmws:0.00} ({o.Transfers:0.00})");
}
