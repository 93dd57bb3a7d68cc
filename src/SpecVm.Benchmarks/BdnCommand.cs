using BenchmarkDotNet.Configs;
using BenchmarkDotNet.ConsoleArguments;
using BenchmarkDotNet.Loggers;
using BenchmarkDotNet.Reports;
using BenchmarkDotNet.Running;
using SpecVm.Diagnosers;
using SpecVm.Benchmarks.Cli;
using SpecVm.Benchmarks.Suites;

namespace SpecVm.Benchmarks;

/// <summary>The <c>bdn</c> command: hands its arguments to BenchmarkDotNet's switcher over every suite in this assembly.</summary>
/// <remarks>
/// Kept apart from <see cref="Program"/> so the command-line front end can change without touching it. Typical use:
/// <c>dotnet run -c Release --project src/SpecVm.Benchmarks -- bdn --filter '*SyncBenchmarks*'</c>. Each suite carries
/// <see cref="BenchConfig"/> in a <c>[Config]</c> attribute, so the switcher gets an empty global configuration and a
/// suite runs the same here as under <c>BenchmarkRunner.Run&lt;T&gt;()</c>. The arguments are checked with
/// BenchmarkDotNet's own parser first, so an unknown option is bad input (exit code 2), as is a filter that matches
/// no benchmark; a failed benchmark or a critical validation error is exit code 1.
/// </remarks>
internal static class BdnCommand
{
    /// <summary>Our one option of the <c>bdn</c> command (not BenchmarkDotNet's): run benchmarks of a Debug build.</summary>
    public const string AllowDebugOption = "--allow-debug";

    /// <summary>
    /// Our other option: add SpecVm's counters per operation as columns (<c>SpecVm.BenchmarkDotNet</c>'s diagnoser), which
    /// runs the benchmarks in process (BenchmarkDotNet's <c>--inProcess</c>, added if not given).
    /// </summary>
    public const string CountersOption = "--specvm-counters";

    /// <summary>BenchmarkDotNet options that only print something, after which no summary is expected.</summary>
    private static readonly string[] InformationalOptions = ["--list", "--help", "-h", "--version", "--info", "-?"];

    /// <summary>Runs the switcher with <paramref name="args"/> (everything after <c>bdn</c>).</summary>
    /// <returns>0 on success; 2 on bad arguments or when no benchmark matched; 1 if a benchmark failed to build or run,
    /// or a validator reported a critical error.</returns>
    public static int Run(string[] args)
    {
        IConfig global = ManualConfig.CreateEmpty();
        if (args.Contains(AllowDebugOption))
        {
            args = args.Where(a => a != AllowDebugOption).ToArray();
            global = global.WithOptions(ConfigOptions.DisableOptimizationsValidator);
            Console.Error.WriteLine("warning: BenchmarkDotNet's check for an optimised build is off (--allow-debug); Debug timings are about 3x slower.");
        }

        if (args.Contains(CountersOption))
        {
            args = args.Where(a => a != CountersOption).ToArray();
            if (!args.Any(a => a.Equals("--inProcess", StringComparison.OrdinalIgnoreCase)))
            {
                args = [.. args, "--inProcess"];
            }

            global = ((ManualConfig)ManualConfig.Create(global)).AddSpecVmDiagnoser();
        }

        bool informational = args.Any(a => InformationalOptions.Contains(a));
        if (!informational)
        {
            var parseLog = new AccumulationLogger();
            if (!ConfigParser.Parse(args, parseLog, global).isSuccess)
            {
                Console.Error.WriteLine($"error: bdn: {FirstError(parseLog.GetLog())} (bdn --help lists BenchmarkDotNet's options)");
                return ExitCodes.BadInput;
            }
        }

        List<Summary> summaries = BenchmarkSwitcher.FromAssembly(typeof(Program).Assembly).Run(args, global).ToList();
        if (informational)
        {
            return ExitCodes.Ok;
        }

        if (summaries.Count == 0 || summaries.All(s => s.BenchmarksCases.Length == 0 && !s.HasCriticalValidationErrors))
        {
            Console.Error.WriteLine($"error: bdn: no benchmark matched {Filters(args)}; list them with: bdn --list flat");
            return ExitCodes.BadInput;
        }

        bool failed = summaries.Any(s => s.HasCriticalValidationErrors || s.Reports.Any(r => !r.Success));
        return failed ? ExitCodes.Failed : ExitCodes.Ok;
    }

    /// <summary>
    /// The first error in BenchmarkDotNet's parser output: the line after its "ERROR(S):" heading (the parser prints
    /// the program's name and version first), or the first line when there is no such heading.
    /// </summary>
    private static string FirstError(string log)
    {
        string[] lines = log.Split('\n', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);
        int heading = Array.FindIndex(lines, l => l.StartsWith("ERROR", StringComparison.Ordinal));
        return heading >= 0 && heading + 1 < lines.Length ? lines[heading + 1] : lines.FirstOrDefault() ?? "invalid arguments";
    }

    private static string Filters(string[] args)
    {
        var filters = new List<string>();
        for (int i = 0; i < args.Length; i++)
        {
            if (args[i] is "--filter" or "-f")
            {
                for (int j = i + 1; j < args.Length && !args[j].StartsWith('-'); j++)
                {
                    filters.Add($"'{args[j]}'");
                }
            }
        }

        return filters.Count == 0 ? "(no --filter given)" : "--filter " + string.Join(' ', filters);
    }
}
