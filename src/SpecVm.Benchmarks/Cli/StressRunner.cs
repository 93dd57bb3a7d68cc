using System.CommandLine;
using System.Globalization;
using SpecVm.Smp;
using SpecVm.Faults;
using SpecVm.Testing;

namespace SpecVm.Benchmarks.Cli;

/// <summary>The <c>stress</c> command: <see cref="StressRun"/> for a bounded time, with progress lines.</summary>
internal static class StressRunner
{
    public static Command Create()
    {
        var duration = new Option<string>("--duration", "-d")
        {
            Description = "How long to run: hh:mm:ss or seconds.",
            DefaultValueFactory = _ => "00:01:00",
        };
        var seed = new Option<int?>("--seed") { Description = "Master seed (replays the same rounds). Default: random, printed." };
        var round = new Option<int?>("--round") { Description = "Replay only this round seed (from a failure line)." };
        var cpus = new Option<int>("--cpus") { Description = "CPUs per machine.", DefaultValueFactory = _ => 4 };
        var roundMs = new Option<int>("--round-ms") { Description = "Milliseconds per round.", DefaultValueFactory = _ => 250 };
        var strategies = new Option<string[]>("--strategy", "-s")
        {
            Description = $"Fault strategies (repeatable or comma-separated). Default: {string.Join(", ", StrategyCatalog.DefaultNames)}.",
            AllowMultipleArgumentsPerToken = true,
        };
        var verbose = new Option<bool>("--verbose", "-v") { Description = "A line per round (default: one every 10 s)." };
        var command = new Command("stress", "Randomized stress: random mappings and workloads on every strategy, fault injection at the interleaving hooks (Debug builds), invariant checks after each round. Exit code 1 on a violation.")
        {
            duration, seed, round, cpus, roundMs, strategies, verbose,
        };
        command.SetAction(p => Run(
            ParseDuration(p.GetValue(duration)!),
            p.GetValue(seed) ?? Random.Shared.Next(),
            p.GetValue(round),
            p.GetValue(cpus),
            p.GetValue(roundMs),
            p.GetValue(strategies),
            p.GetValue(verbose)));
        return command;
    }

    private static int Run(TimeSpan duration, int seed, int? roundSeed, int cpus, int roundMs, string[]? strategyArgs, bool verbose)
    {
        string[] strategies = (strategyArgs ?? []).SelectMany(s => s.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries)).ToArray();
        var options = new StressOptions
        {
            Duration = duration,
            Seed = seed,
            CpuCount = cpus,
            RoundDuration = TimeSpan.FromMilliseconds(roundMs),
            Strategies = strategies.Length == 0 ? StrategyCatalog.DefaultNames : strategies,
        };
        try
        {
            if (roundSeed is int only)
            {
                StressProgress one = StressRun.RunRound(options, only);
                Console.WriteLine($"round seed {only}: {one.Strategy} + {one.Workload}, {one.Operations:N0} ops, {one.HookInjections:N0} injections, {one.Violations.Count} violations");
                Print(one.Violations);
                return one.Violations.Count == 0 ? ExitCodes.Ok : ExitCodes.Failed;
            }

            Console.WriteLine($"stress: seed {seed}, {duration}, {cpus} CPUs, rounds of {roundMs} ms, strategies {string.Join(", ", options.Strategies)}, hooks {(InterleavingHooks.CompiledIn ? "injecting (Debug build)" : "compiled out (Release build)")}");
            TimeSpan nextLine = TimeSpan.FromSeconds(10);
            long ops = 0;
            options.Progress = p =>
            {
                ops += p.Operations;
                if (verbose || p.Violations.Count != 0 || p.Elapsed >= nextLine)
                {
                    nextLine = p.Elapsed + TimeSpan.FromSeconds(10);
                    Console.WriteLine(string.Create(CultureInfo.InvariantCulture, $"[{p.Elapsed:hh\\:mm\\:ss}] round {p.Round} (seed {p.RoundSeed}, {p.Strategy} + {p.Workload}): {ops:N0} ops so far, {p.Violations.Count} violations"));
                }
            };
            StressReport report = StressRun.Run(options);
            string byStrategy = string.Join(", ", report.RoundsByStrategy.OrderBy(kv => kv.Key, StringComparer.Ordinal).Select(kv => $"{kv.Key} {kv.Value}"));
            Console.WriteLine(string.Create(CultureInfo.InvariantCulture, $"stress: {report.Elapsed:hh\\:mm\\:ss}, {report.Rounds:N0} rounds ({byStrategy}), {report.Operations:N0} operations, {report.HookInjections:N0} hook injections, {report.Violations.Count} violations"));
            if (!report.Passed)
            {
                Console.WriteLine($"FAILED in round seed {report.FailingRoundSeed} (replay: stress --round {report.FailingRoundSeed} --cpus {cpus} --round-ms {roundMs}; master seed {seed})");
                Print(report.Violations);
                return ExitCodes.Failed;
            }

            return ExitCodes.Ok;
        }
        catch (ArgumentException e)
        {
            throw new UsageException(e.Message);
        }
    }

    private static void Print(IReadOnlyList<string> violations)
    {
        foreach (string v in violations.Take(50))
        {
            Console.WriteLine("  " + v);
        }
    }

    private static TimeSpan ParseDuration(string text)
    {
        if (double.TryParse(text, NumberStyles.Float, CultureInfo.InvariantCulture, out double seconds) && seconds >= 0)
        {
            return TimeSpan.FromSeconds(seconds);
        }

        if (TimeSpan.TryParse(text, CultureInfo.InvariantCulture, out TimeSpan t) && t >= TimeSpan.Zero)
        {
            return t;
        }

        throw new UsageException($"--duration: '{text}' is neither hh:mm:ss nor seconds.");
    }
}
