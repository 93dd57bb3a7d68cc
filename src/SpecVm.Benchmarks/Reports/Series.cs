using System.Globalization;
using SpecVm.Scaling;

namespace SpecVm.Benchmarks.Reports;

/// <summary>
/// Groups points for reports and gives every series one identity across all of a report's tables and plots: a
/// "family" is a workload and its native twin (database-load and native-database-load); a series is a strategy, or the
/// kernel. Nothing here knows a strategy by name: the order is the result's own (its settings' strategy list, then any
/// other strategy in first-seen order, the kernel last), the baseline is the first of that order, and colours are
/// handed out by that order, so a strategy has the same colour in every plot of every run with the same list. A
/// strategy's predicted points (virtual time) are a series of their own beside its measured ones, in the same colour.
/// </summary>
internal static class Series
{
    public const string NativePrefix = "native-";

    /// <summary>The label of the kernel's series.</summary>
    public const string KernelLabel = "native (kernel)";

    private static readonly CultureInfo Inv = CultureInfo.InvariantCulture;

    /// <summary>The model workload's name for a native workload, else the name itself.</summary>
    public static string Family(string workload) => workload.StartsWith(NativePrefix, StringComparison.Ordinal) ? workload[NativePrefix.Length..] : workload;

    /// <summary>The mode of a predicted point (<see cref="ScalingPoint.Mode"/>).</summary>
    public const string PredictedMode = "predicted";

    /// <summary>The mode of a measured point; points written before schema 3 have no mode and are measured.</summary>
    public const string MeasuredMode = "measured";

    /// <summary>True for a point predicted in virtual time.</summary>
    public static bool IsPredicted(ScalingPoint p) => p.Mode == PredictedMode;

    /// <summary>"predicted" or "measured".</summary>
    public static string ModeName(ScalingPoint p) => IsPredicted(p) ? PredictedMode : MeasuredMode;

    /// <summary>A series label: the strategy (with " (predicted)" for predicted points), or <see cref="KernelLabel"/>.</summary>
    public static string Label(ScalingPoint p) => p.Native ? KernelLabel : IsPredicted(p) ? $"{p.Strategy} ({PredictedMode})" : p.Strategy;

    /// <summary>True when the result holds predicted points.</summary>
    public static bool HasPredicted(ScalingResult r) => r.Points.Any(IsPredicted);

    /// <summary>True when the result holds measured points.</summary>
    public static bool HasMeasured(ScalingResult r) => r.Points.Any(p => !IsPredicted(p));

    /// <summary>How the point was run: the result's settings, or its <see cref="ScalingResult.PredictedSettings"/> for a predicted point of a result holding both modes.</summary>
    public static ScalingSettings SettingsOf(ScalingResult r, ScalingPoint p) => IsPredicted(p) && r.PredictedSettings != null ? r.PredictedSettings : r.Settings;

    /// <summary>The settings of the result's predicted points, or null when it has none.</summary>
    public static ScalingSettings? PredictedSettings(ScalingResult r) => r.PredictedSettings ?? (HasPredicted(r) ? r.Settings : null);

    /// <summary>The point of (workload, strategy, threads) in one mode, or null.</summary>
    public static ScalingPoint? Find(ScalingResult r, string workload, string strategy, int threads, bool predicted) =>
        r.Points.Find(p => p.Workload == workload && p.Strategy == strategy && p.Threads == threads && IsPredicted(p) == predicted);

    /// <summary>Every model strategy of the result, in the result's order; the first is the baseline of ratios.</summary>
    public static List<string> StrategyOrder(ScalingResult r)
    {
        var order = new List<string>(r.Settings.Strategies);
        foreach (ScalingPoint p in r.Points)
        {
            if (!p.Native && !order.Contains(p.Strategy))
            {
                order.Add(p.Strategy);
            }
        }

        order.RemoveAll(s => !r.Points.Any(p => !p.Native && p.Strategy == s));
        return order;
    }

    /// <summary>The strategy other strategies are compared with: the first the result lists, or null if it has none.</summary>
    public static string? Baseline(ScalingResult r) => StrategyOrder(r).FirstOrDefault();

    /// <summary>The series' colour index: its place in <see cref="StrategyOrder"/>, the kernel after every strategy.</summary>
    public static int ColorIndex(ScalingResult r, string label)
    {
        List<string> order = StrategyOrder(r);
        int i = order.IndexOf(label);
        return i >= 0 ? i : order.Count;
    }

    /// <summary>
    /// Families in first-seen order, each with its series in <see cref="StrategyOrder"/> (a strategy's measured series,
    /// then its predicted one; the kernel last).
    /// </summary>
    public static List<(string Family, List<SeriesData> Series)> ByFamily(ScalingResult r) =>
        r.Points
            .GroupBy(p => Family(p.Workload))
            .Select(g => (g.Key, g.GroupBy(Label)
                .Select(s => new SeriesData(s.Key, s.First().Strategy, s.First().Native, IsPredicted(s.First()), s.OrderBy(p => p.Threads).ToList()))
                .OrderBy(s => s.Kernel ? int.MaxValue : ColorIndex(r, s.Strategy))
                .ThenBy(s => s.Predicted)
                .ToList()))
            .ToList();

    /// <summary>Thread counts measured in the result.</summary>
    public static List<int> ThreadCounts(ScalingResult r) => r.Points.Select(p => p.Threads).Distinct().Order().ToList();

    /// <summary>Repeats behind a point's mean and SD.</summary>
    public static int Repeats(ScalingPoint p) => Math.Max(1, p.RepeatOpsPerSecond.Count);

    /// <summary>a / b with the SD propagated from both (independent repeats, first order): r·√((sa/a)² + (sb/b)²).</summary>
    public static (double Ratio, double Sd) Ratio(double a, double sa, double b, double sb)
    {
        double ratio = a / b;
        return (ratio, ratio * Math.Sqrt(Math.Pow(sa / a, 2) + Math.Pow(sb / b, 2)));
    }

    /// <summary>Per-thread efficiency X(N) / (N·X(1)) with its propagated SD, or null without a usable 1-thread point.</summary>
    public static (double Value, double Sd)? Efficiency(ScalingPoint p, ScalingPoint? one)
    {
        if (one == null || one.OpsPerSecond <= 0 || p.OpsPerSecond <= 0)
        {
            return null;
        }

        if (ReferenceEquals(p, one))
        {
            return (1, 0);   // X(1) / X(1): exactly 1 by definition, not an uncertain ratio
        }

        var (ratio, sd) = Ratio(p.OpsPerSecond, p.OpsPerSecondStdDev, one.OpsPerSecond, one.OpsPerSecondStdDev);
        return (ratio / p.Threads, sd / p.Threads);
    }

    /// <summary>The run's identity in one line: machine, commit, when it finished, how long it measured (and what it predicted with).</summary>
    public static string Identity(ScalingResult r)
    {
        MachineInfo m = r.Machine;
        string commit = m.GitCommit is { Length: > 0 } c ? c[..Math.Min(12, c.Length)] + (m.GitDirty == true ? "+dirty" : string.Empty) : "commit unknown";
        string kernel = m.KernelRelease is { Length: > 0 } k ? $"Linux {k}" : m.Os;
        string build = r.Runtime is { BuildConfiguration.Length: > 0 } rt ? $", {rt.BuildConfiguration}{(rt.BuildConfiguration == "Debug" && HasMeasured(r) ? " (NOT an optimised build)" : string.Empty)}" : string.Empty;
        string partial = r.Partial ? " | PARTIAL (interrupted)" : string.Empty;
        var how = new List<string>();
        if (HasMeasured(r))
        {
            double measured = r.Points.Where(p => !IsPredicted(p)).Sum(p => p.MeasuredSeconds);
            how.Add(HasPredicted(r)
                ? string.Create(Inv, $"measured {r.Settings.DurationSeconds:0.###} s × {r.Settings.Repeats}")
                : string.Create(Inv, $"{r.Settings.DurationSeconds:0.###} s × {r.Settings.Repeats} per point, {measured / 60:0.0} min measured"));
        }

        if (PredictedSettings(r) is ScalingSettings v)
        {
            how.Add(string.Create(Inv, $"predicted: model {v.VirtualTimePreset ?? "?"}, {v.DurationSeconds * 1000:0.###} ms virtual"));
        }

        return string.Create(Inv, $"{m.CpuModel}, {m.AllowedCores}/{m.LogicalCores} cores, {kernel}, {m.DotNet}{build} | {commit} | {r.CreatedUtc:yyyy-MM-dd HH:mm}Z | {string.Join("; ", how)}{partial}");
    }
}

/// <summary>One series of a family: its label, strategy, whether it is the kernel's or predicted, and its points by threads.</summary>
/// <param name="Label">The legend and table label (<see cref="Series.Label"/>).</param>
/// <param name="Strategy">The strategy ("native" for the kernel).</param>
/// <param name="Kernel">True for the native workload's series.</param>
/// <param name="Predicted">True for predicted points (virtual time).</param>
/// <param name="Points">The points, by ascending thread count.</param>
internal sealed record SeriesData(string Label, string Strategy, bool Kernel, bool Predicted, List<ScalingPoint> Points);
