using BenchmarkDotNet.Reports;
using BenchmarkDotNet.Running;
using SpecVm.Benchmarks.Suites;

namespace SpecVm.Benchmarks;

/// <summary>The <c>bdn</c> command: hands its arguments to BenchmarkDotNet's switcher over every suite in this assembly.</summary>
/// <remarks>
/// Kept apart from <see cref="Program"/> so the command-line front end can change without touching it. Typical use:
/// <c>dotnet run -c Release --project src/SpecVm.Benchmarks -- bdn --filter '*SyncBenchmarks*'</c>.
/// </remarks>
internal static class BdnCommand
{
    /// <summary>Runs the switcher with <paramref name="args"/> (everything after <c>bdn</c>) and <see cref="BenchConfig"/>.</summary>
    /// <returns>0 on success; 1 if a benchmark failed to build or run, or a validator reported a critical error.</returns>
    public static int Run(string[] args)
    {
        IEnumerable<Summary> summaries = BenchmarkSwitcher.FromAssembly(typeof(Program).Assembly).Run(args, new BenchConfig());
        bool failed = summaries.Any(s => s.HasCriticalValidationErrors || s.Reports.Any(r => !r.Success));
        return failed ? 1 : 0;
    }
}
