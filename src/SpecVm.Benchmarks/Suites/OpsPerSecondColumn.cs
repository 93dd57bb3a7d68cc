using BenchmarkDotNet.Columns;
using BenchmarkDotNet.Configs;
using BenchmarkDotNet.Reports;
using BenchmarkDotNet.Running;

namespace SpecVm.Benchmarks.Suites;

/// <summary>
/// A column with operations per second (1 / mean time per operation, after <c>OperationsPerInvoke</c>): the natural
/// unit for fault throughput. For threaded suites the operation count is the total over all threads, so the column is
/// aggregate throughput.
/// </summary>
public sealed class OpsPerSecondColumn : IColumn
{
    /// <inheritdoc/>
    public string Id => nameof(OpsPerSecondColumn);

    /// <inheritdoc/>
    public string ColumnName => "Ops/s";

    /// <inheritdoc/>
    public bool AlwaysShow => true;

    /// <inheritdoc/>
    public ColumnCategory Category => ColumnCategory.Custom;

    /// <inheritdoc/>
    public int PriorityInCategory => 0;

    /// <inheritdoc/>
    public bool IsNumeric => true;

    /// <inheritdoc/>
    public UnitType UnitType => UnitType.Dimensionless;

    /// <inheritdoc/>
    public string Legend => "Operations per second (aggregate over threads where a suite runs several)";

    /// <inheritdoc/>
    public string GetValue(Summary summary, BenchmarkCase benchmarkCase) => GetValue(summary, benchmarkCase, SummaryStyle.Default);

    /// <inheritdoc/>
    public string GetValue(Summary summary, BenchmarkCase benchmarkCase, SummaryStyle style)
    {
        double? meanNs = summary[benchmarkCase]?.ResultStatistics?.Mean;
        return meanNs is double ns && ns > 0 ? (1e9 / ns).ToString("N0", style.CultureInfo) : "-";
    }

    /// <inheritdoc/>
    public bool IsAvailable(Summary summary) => true;

    /// <inheritdoc/>
    public bool IsDefault(Summary summary, BenchmarkCase benchmarkCase) => false;
}

/// <summary>Adds <see cref="OpsPerSecondColumn"/> to a suite.</summary>
[AttributeUsage(AttributeTargets.Class)]
public sealed class OpsPerSecondColumnAttribute : Attribute, IConfigSource
{
    /// <summary>Creates the attribute.</summary>
    public OpsPerSecondColumnAttribute() => Config = ManualConfig.CreateEmpty().AddColumn(new OpsPerSecondColumn());

    /// <inheritdoc/>
    public IConfig Config { get; }
}
