using BenchmarkDotNet.Configs;
using BenchmarkDotNet.Diagnosers;
using BenchmarkDotNet.Exporters;
using BenchmarkDotNet.Exporters.Csv;
using BenchmarkDotNet.Exporters.Json;

namespace SpecVm.Benchmarks.Suites;

/// <summary>
/// The one BenchmarkDotNet configuration every SpecVm suite runs with, carried by each suite's
/// <c>[Config(typeof(BenchConfig))]</c> attribute so it applies under <see cref="BdnCommand"/>'s switcher and under
/// <c>BenchmarkRunner.Run&lt;T&gt;()</c> alike:
/// BenchmarkDotNet's default loggers, columns, validators and analysers, plus allocated bytes per operation, and the
/// results as GitHub Markdown, CSV and JSON under <c>BenchmarkDotNet.Artifacts/results</c>.
/// </summary>
/// <remarks>
/// Allocated bytes are the column CI gates on (DESIGN.md, "No allocation on the fault, access or IPI path"); times are
/// for reading ratios against each suite's baseline, not for gating. No job is set here, so the command line
/// (<c>--job short</c>, <c>--job dry</c>, ...) chooses it, and BenchmarkDotNet's default job applies otherwise.
/// </remarks>
public sealed class BenchConfig : ManualConfig
{
    /// <summary>Builds the shared configuration.</summary>
    public BenchConfig()
    {
        IConfig defaults = DefaultConfig.Instance;
        AddLogger([.. defaults.GetLoggers()]);
        AddColumnProvider([.. defaults.GetColumnProviders()]);
        AddValidator([.. defaults.GetValidators()]);
        AddAnalyser([.. defaults.GetAnalysers()]);
        AddDiagnoser(MemoryDiagnoser.Default);
        AddExporter(MarkdownExporter.GitHub, CsvExporter.Default, JsonExporter.Full);
    }
}
