using SpecVm.Scaling;

namespace SpecVm.Benchmarks.Reports;

/// <summary>Groups points for reports: a "family" is a workload and its native twin (database-load and native-database-load).</summary>
internal static class Series
{
    public const string NativePrefix = "native-";

    /// <summary>The model workload's name for a native workload, else the name itself.</summary>
    public static string Family(string workload) => workload.StartsWith(NativePrefix, StringComparison.Ordinal) ? workload[NativePrefix.Length..] : workload;

    /// <summary>A series label: the strategy, or "native (kernel)".</summary>
    public static string Label(ScalingPoint p) => p.Native ? "native (kernel)" : p.Strategy;

    /// <summary>Families in first-seen order, each with its series (label → points by threads).</summary>
    public static List<(string Family, List<(string Label, List<ScalingPoint> Points)> Series)> ByFamily(ScalingResult r) =>
        r.Points
            .GroupBy(p => Family(p.Workload))
            .Select(g => (g.Key, g.GroupBy(Label).Select(s => (s.Key, s.OrderBy(p => p.Threads).ToList())).ToList()))
            .ToList();
}
