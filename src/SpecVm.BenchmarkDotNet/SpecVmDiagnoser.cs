using System.Collections.Concurrent;
using BenchmarkDotNet.Analysers;
using BenchmarkDotNet.Columns;
using BenchmarkDotNet.Configs;
using BenchmarkDotNet.Diagnosers;
using BenchmarkDotNet.Engines;
using BenchmarkDotNet.Exporters;
using BenchmarkDotNet.Loggers;
using BenchmarkDotNet.Reports;
using BenchmarkDotNet.Running;
using BenchmarkDotNet.Toolchains.InProcess.Emit;
using BenchmarkDotNet.Toolchains.InProcess.NoEmit;
using BenchmarkDotNet.Validators;
using SpecVm.Smp;

namespace SpecVm.Diagnosers;

/// <summary>
/// A BenchmarkDotNet diagnoser that adds SpecVm's counters per operation as columns (as BenchmarkDotNet's own
/// <c>ThreadingDiagnoser</c> adds lock contentions): faults, mmap-lock acquisitions and waits, speculative attempts,
/// successes and each abort reason, per-VMA-lock outcomes, fallbacks, IPIs, shootdowns, TLB misses — every
/// <see cref="CpuCounter"/> that counts events, every <see cref="RegisteredCounter"/> (a strategy's own outcomes), and for
/// each wait kind of <see cref="WaitHistogram"/> the waits that
/// waited. A column appears only when some benchmark of the run moved its counter.
/// </summary>
/// <remarks>
/// <para>
/// It counts what every SpecVm <see cref="Machine"/> of the process did between the start and the end of a benchmark's
/// actual (measured) iterations (<see cref="Machine.ProcessSnapshot"/>), divided by the operations BenchmarkDotNet ran
/// in them. The benchmark needs nothing but to build its machines as usual. Work done in <c>[IterationSetup]</c> and
/// <c>[IterationCleanup]</c> falls inside that span and is counted too (a setup that unmaps counts its shootdowns).
/// </para>
/// <para>
/// The counters live in the benchmark's process, so the benchmarks must run in process: <c>[InProcess]</c> on the
/// class, or a job with <c>InProcessEmitToolchain</c>; the diagnoser refuses other jobs at validation. Use it with
/// <c>[SpecVmDiagnoser]</c> on a benchmark class, or <c>config.AddSpecVmDiagnoser()</c> (which adds the diagnoser and its
/// columns).
/// </para>
/// </remarks>
public sealed class SpecVmDiagnoser : IDiagnoser
{
    private readonly ConcurrentDictionary<BenchmarkCase, CounterSnapshot> _before = new();
    private readonly ConcurrentDictionary<BenchmarkCase, CounterSnapshot> _delta = new();

    private SpecVmDiagnoser()
    {
    }

    /// <summary>The diagnoser (it keeps no settings).</summary>
    public static SpecVmDiagnoser Default { get; } = new();

    /// <inheritdoc/>
    public IEnumerable<string> Ids => [nameof(SpecVmDiagnoser)];

    /// <inheritdoc/>
    public IEnumerable<IExporter> Exporters => [];

    /// <inheritdoc/>
    public IEnumerable<IAnalyser> Analysers => [];

    /// <summary>The counters shown, in column order: event counts only (no time totals, no histogram buckets).</summary>
    internal static IReadOnlyList<CpuCounter> Counters { get; } = EventCounters();

    /// <summary>
    /// The diagnoser's columns. BenchmarkDotNet shows a diagnoser's columns only when the config lists them, so add
    /// them with it: <c>[SpecVmDiagnoser]</c> and <see cref="SpecVmDiagnoserConfigExtensions.AddSpecVmDiagnoser"/> do both.
    /// </summary>
    public IColumnProvider GetColumnProvider() => new ColumnProvider(this);

    /// <inheritdoc/>
    public RunMode GetRunMode(BenchmarkCase benchmarkCase) => RunMode.NoOverhead;

    /// <inheritdoc/>
    public void Handle(HostSignal signal, DiagnoserActionParameters parameters)
    {
        ArgumentNullException.ThrowIfNull(parameters);
        switch (signal)
        {
            case HostSignal.BeforeActualRun:
                _before[parameters.BenchmarkCase] = Machine.ProcessSnapshot();
                break;
            case HostSignal.AfterActualRun:
                if (_before.TryRemove(parameters.BenchmarkCase, out CounterSnapshot? before))
                {
                    _delta[parameters.BenchmarkCase] = Machine.ProcessSnapshot().Minus(before);
                }

                break;
        }
    }

    /// <inheritdoc/>
    /// <remarks>No metrics: the operations the counters divide by are those of the actual iterations, which only the
    /// summary knows (<see cref="DiagnoserResults.TotalOperations"/> also counts pilot, warm-up and result
    /// measurements), so the values come as columns (<see cref="GetColumnProvider"/>).</remarks>
    public IEnumerable<Metric> ProcessResults(DiagnoserResults results) => [];

    /// <summary>
    /// The value of one column for one benchmark: its counter's change over the actual iterations divided by their
    /// operations; null when the benchmark did not run (or failed before its actual iterations).
    /// </summary>
    internal double? PerOperation(Summary summary, BenchmarkCase benchmarkCase, Func<CounterSnapshot, long> counter)
    {
        if (!_delta.TryGetValue(benchmarkCase, out CounterSnapshot? delta) || summary[benchmarkCase] is not { } report)
        {
            return null;
        }

        long ops = report.AllMeasurements
            .Where(m => m.IterationMode == IterationMode.Workload && m.IterationStage == IterationStage.Actual)
            .Sum(m => m.Operations);
        return ops <= 0 ? null : counter(delta) / (double)ops;
    }

    /// <inheritdoc/>
    public void DisplayResults(ILogger logger)
    {
    }

    /// <inheritdoc/>
    public IEnumerable<ValidationError> Validate(ValidationParameters validationParameters)
    {
        ArgumentNullException.ThrowIfNull(validationParameters);
        foreach (BenchmarkCase b in validationParameters.Benchmarks)
        {
            if (b.Job.Infrastructure.Toolchain is not (InProcessEmitToolchain or InProcessNoEmitToolchain))
            {
                yield return new ValidationError(
                    true,
                    $"{nameof(SpecVmDiagnoser)} reads the counters of the SpecVm machines in its own process: run the benchmarks in process ([InProcess] on the class, or a job with InProcessEmitToolchain).",
                    b);
            }
        }
    }

    private static List<CpuCounter> EventCounters()
    {
        var histogram = new HashSet<CpuCounter>();
        foreach (WaitKind kind in WaitHistogram.Kinds)
        {
            for (int b = 0; b < WaitHistogram.BucketCount; b++)
            {
                histogram.Add(WaitHistogram.Counter(kind, b));
            }

            histogram.Add(WaitHistogram.TicksCounter(kind));
        }

        return Enum.GetValues<CpuCounter>()
            .Where(c => c != CpuCounter.Count && !histogram.Contains(c) && !c.ToString().EndsWith("Ticks", StringComparison.Ordinal))
            .ToList();
    }

    /// <summary>Every counter's column and every wait kind's, in that order.</summary>
    private sealed class ColumnProvider(SpecVmDiagnoser diagnoser) : IColumnProvider
    {
        public IEnumerable<IColumn> GetColumns(Summary summary)
        {
            int priority = 0;
            foreach (CpuCounter c in Counters)
            {
                yield return new CounterColumn(diagnoser, "SpecVm." + c, c.ToString(), $"SpecVm counter {c} per operation, summed over every CPU of every machine in the process (CpuCounter.{c}).", priority++, d => d[c]);
            }

            // Counters strategies registered for themselves (their own outcomes), named as registered.
            foreach (RegisteredCounter r in RegisteredCounter.All)
            {
                yield return new CounterColumn(diagnoser, "SpecVm.Registered." + r.Name, r.Name, $"SpecVm registered counter '{r.Name}' per operation.", priority++, d => d[r]);
            }

            foreach (WaitKind kind in WaitHistogram.Kinds)
            {
                yield return new CounterColumn(diagnoser, "SpecVm.Waits." + kind, WaitHistogram.Name(kind) + " waits", $"SpecVm: {WaitHistogram.Name(kind)} waits that waited (the uncontended path is not counted), per operation.", priority++, d => Waits(d, kind));
            }
        }

        private static long Waits(CounterSnapshot d, WaitKind kind)
        {
            long waits = 0;
            for (int b = 0; b < WaitHistogram.BucketCount; b++)
            {
                waits += d[WaitHistogram.Counter(kind, b)];
            }

            return waits;
        }
    }

    /// <summary>One counter per operation; shown only when some benchmark of the summary moved it.</summary>
    internal sealed class CounterColumn(SpecVmDiagnoser diagnoser, string id, string name, string legend, int priority, Func<CounterSnapshot, long> counter) : IColumn
    {
        public string Id => id;

        public string ColumnName => name;

        public bool AlwaysShow => true; // Shown even when every benchmark has the same value (IsAvailable hides the all-zero ones).

        public ColumnCategory Category => ColumnCategory.Metric;

        public int PriorityInCategory => priority;

        public bool IsNumeric => true;

        public UnitType UnitType => UnitType.Dimensionless;

        public string Legend => legend;

        public double? Value(Summary summary, BenchmarkCase benchmarkCase) => diagnoser.PerOperation(summary, benchmarkCase, counter);

        public string GetValue(Summary summary, BenchmarkCase benchmarkCase) =>
            Value(summary, benchmarkCase) is { } v ? v.ToString("0.####", System.Globalization.CultureInfo.InvariantCulture) : "-";

        public string GetValue(Summary summary, BenchmarkCase benchmarkCase, SummaryStyle style) => GetValue(summary, benchmarkCase);

        public bool IsDefault(Summary summary, BenchmarkCase benchmarkCase) => false;

        public bool IsAvailable(Summary summary) => summary.BenchmarksCases.Any(b => Value(summary, b) is > 0);

        public override string ToString() => ColumnName;
    }
}

/// <summary>
/// Adds <see cref="SpecVmDiagnoser"/> to the benchmarks of the class it annotates (together with <c>[InProcess]</c>,
/// which the diagnoser needs).
/// </summary>
[AttributeUsage(AttributeTargets.Class | AttributeTargets.Assembly, AllowMultiple = false)]
public sealed class SpecVmDiagnoserAttribute : Attribute, IConfigSource
{
    /// <inheritdoc/>
    public IConfig Config { get; } = ManualConfig.CreateEmpty().AddSpecVmDiagnoser();
}

/// <summary>Adds <see cref="SpecVmDiagnoser"/> to a BenchmarkDotNet config.</summary>
public static class SpecVmDiagnoserConfigExtensions
{
    /// <summary>Adds <see cref="SpecVmDiagnoser.Default"/> and its columns to <paramref name="config"/>.</summary>
    /// <param name="config">The config to extend.</param>
    /// <returns>The same config.</returns>
    public static ManualConfig AddSpecVmDiagnoser(this ManualConfig config)
    {
        ArgumentNullException.ThrowIfNull(config);
        return config.AddDiagnoser(SpecVmDiagnoser.Default).AddColumnProvider(SpecVmDiagnoser.Default.GetColumnProvider());
    }
}
