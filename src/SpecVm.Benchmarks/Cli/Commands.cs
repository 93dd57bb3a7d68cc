using System.CommandLine;

namespace SpecVm.Benchmarks.Cli;

/// <summary>Builds the command tree (System.CommandLine 2.0).</summary>
internal static class Commands
{
    public static RootCommand Build()
    {
        var root = new RootCommand(
            "SpecVm scaling harness. With no command: the default comparison (database-load with and without its writer, "
            + "page-fault1, every strategy, 1..cores threads, and the native kernel), then a predicted sweep of the same model workloads "
            + $"at {string.Join(",", MainJob.PredictedThreads)} simulated CPUs (virtual time, the host cost model calibrated on this machine first), written together to results/<timestamp>/.");
        ScaleOptions rootOptions = ScaleOptions.Create(root: true);
        rootOptions.AddTo(root);
        root.SetAction(p => MainJob.Run(rootOptions.Read(p)));

        var scale = new Command("scale", "Run a scaling experiment: workloads × strategies × thread counts.");
        ScaleOptions scaleOptions = ScaleOptions.Create();
        scaleOptions.AddTo(scale);
        scale.SetAction(p => ScaleRunner.Run(scaleOptions.Read(p)));
        root.Subcommands.Add(scale);

        var baseline = new Argument<string>("baseline") { Description = "Result A: a results.json file or a results directory." };
        var candidate = new Argument<string>("candidate") { Description = "Result B: a results.json file or a results directory." };
        var force = new Option<bool>("--force")
        {
            Description = "Compare even results measured with different settings, build configuration or time mode (otherwise refused, exit code 2).",
        };
        var failOnRegression = new Option<double?>("--fail-on-regression")
        {
            Description = "Exit code 3 when some point's whole 95% interval of B/A lies below 1 - PERCENT/100 (a CI gate).",
            HelpName = "PERCENT",
        };
        var compare = new Command("compare", "Put two results side by side: ratios B/A with 95% confidence intervals from the repeats; a difference is marked only when its interval excludes 1.")
        {
            baseline, candidate, force, failOnRegression,
        };
        compare.SetAction(p => CompareRunner.Run(p.GetValue(baseline)!, p.GetValue(candidate)!, p.GetValue(force), p.GetValue(failOnRegression)));
        root.Subcommands.Add(compare);

        var folder = new Argument<string>("folder") { Description = "A results folder (with results.json, and validation.json if a validation wrote it)." };
        var report = new Command("report", "Rewrite a results folder's report.md, results.csv and plots from its results.json (and validation.json): after an update of SpecVm's reports, say.")
        {
            folder,
        };
        report.SetAction(p => ReportRunner.Run(p.GetValue(folder)!));
        root.Subcommands.Add(report);

        root.Subcommands.Add(StressRunner.Create());
        root.Subcommands.Add(CalibrateRunner.Create());
        root.Subcommands.Add(ValidateRunner.Create());
        root.Subcommands.Add(PairedRunner.Create());

        // Listed for --help only: Program hands "bdn ..." to BenchmarkDotNet before parsing.
        var bdn = new Command("bdn", "Run BenchmarkDotNet suites; every following argument goes to BenchmarkSwitcher (e.g. bdn --filter '*Tlb*').");
        bdn.TreatUnmatchedTokensAsErrors = false;
        bdn.SetAction(p => BdnCommand.Run(p.UnmatchedTokens.ToArray()));
        root.Subcommands.Add(bdn);
        return root;
    }
}
