using BenchmarkDotNet.Columns;
using BenchmarkDotNet.Configs;
using BenchmarkDotNet.Reports;
using BenchmarkDotNet.Running;
using SpecVm.Faults;

namespace SpecVm.Benchmarks.Suites;

/// <summary>
/// The strategies a fault suite runs, read from <see cref="StrategyCatalog"/> (every correct strategy, the baseline
/// first): a suite takes them with <c>[ParamsSource(nameof(StrategyParams.Names))]</c>-style forwarding, so a new
/// strategy is benchmarked without editing any suite.
/// </summary>
public static class StrategyParams
{
    /// <summary>The name of the parameter property every strategy-parameterised suite declares.</summary>
    public const string Parameter = "Strategy";

    /// <summary>Every correct strategy of the catalog, its baseline first.</summary>
    public static IEnumerable<string> Names => StrategyCatalog.CorrectNames;
}

/// <summary>
/// The Ratio column for suites that take the strategy as a parameter (BenchmarkDotNet's own Ratio needs a baseline
/// <em>method</em>): each case's mean time over the mean of the case that differs only in running the catalog's
/// baseline strategy (<see cref="StrategyCatalog.Baseline"/>).
/// </summary>
public sealed class StrategyRatioColumn : IColumn
{
    /// <inheritdoc/>
    public string Id => nameof(StrategyRatioColumn);

    /// <inheritdoc/>
    public string ColumnName => $"Ratio vs {StrategyCatalog.Baseline}";

    /// <inheritdoc/>
    public bool AlwaysShow => true;

    /// <inheritdoc/>
    public ColumnCategory Category => ColumnCategory.Custom;

    /// <inheritdoc/>
    public int PriorityInCategory => 1;

    /// <inheritdoc/>
    public bool IsNumeric => true;

    /// <inheritdoc/>
    public UnitType UnitType => UnitType.Dimensionless;

    /// <inheritdoc/>
    public string Legend => $"Mean time over the mean time of the same case with the {StrategyCatalog.Baseline} strategy";

    /// <inheritdoc/>
    public string GetValue(Summary summary, BenchmarkCase benchmarkCase) => GetValue(summary, benchmarkCase, SummaryStyle.Default);

    /// <inheritdoc/>
    public string GetValue(Summary summary, BenchmarkCase benchmarkCase, SummaryStyle style)
    {
        BenchmarkCase? baseline = summary.BenchmarksCases.FirstOrDefault(c =>
            c.Descriptor == benchmarkCase.Descriptor
            && Equals(c.Parameters[StrategyParams.Parameter], StrategyCatalog.Baseline)
            && c.Parameters.Items.Where(i => i.Name != StrategyParams.Parameter).SequenceEqual(
                benchmarkCase.Parameters.Items.Where(i => i.Name != StrategyParams.Parameter),
                ParameterComparer.Instance));
        double? mine = summary[benchmarkCase]?.ResultStatistics?.Mean;
        double? theirs = baseline == null ? null : summary[baseline]?.ResultStatistics?.Mean;
        return mine is double m && theirs is double t && t > 0 ? (m / t).ToString("0.00", style.CultureInfo) : "-";
    }

    /// <inheritdoc/>
    public bool IsAvailable(Summary summary) => true;

    /// <inheritdoc/>
    public bool IsDefault(Summary summary, BenchmarkCase benchmarkCase) => false;

    private sealed class ParameterComparer : IEqualityComparer<global::BenchmarkDotNet.Parameters.ParameterInstance>
    {
        public static readonly ParameterComparer Instance = new();

        public bool Equals(global::BenchmarkDotNet.Parameters.ParameterInstance? x, global::BenchmarkDotNet.Parameters.ParameterInstance? y) =>
            x?.Name == y?.Name && Equals(x?.Value, y?.Value);

        public int GetHashCode(global::BenchmarkDotNet.Parameters.ParameterInstance obj) => obj.Name.GetHashCode(StringComparison.Ordinal);
    }
}

/// <summary>Adds <see cref="StrategyRatioColumn"/> to a suite.</summary>
[AttributeUsage(AttributeTargets.Class)]
public sealed class StrategyRatioColumnAttribute : Attribute, IConfigSource
{
    /// <summary>Creates the attribute.</summary>
    public StrategyRatioColumnAttribute() => Config = ManualConfig.CreateEmpty().AddColumn(new StrategyRatioColumn());

    /// <inheritdoc/>
    public IConfig Config { get; }
}
