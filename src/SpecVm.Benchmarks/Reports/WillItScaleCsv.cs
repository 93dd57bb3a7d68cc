using System.Globalization;
using System.Text;
using SpecVm.Scaling;
using SpecVm.Workloads;

namespace SpecVm.Benchmarks.Reports;

/// <summary>
/// will-it-scale's own output shape, so its plotting scripts and spreadsheets read SpecVm's curves: one CSV per
/// test × strategy, <c>wis-&lt;workload&gt;-&lt;strategy&gt;.csv</c>, as runtest.py prints it
/// (antonblanchard/will-it-scale, runtest.py).
/// </summary>
/// <remarks>
/// <para>
/// runtest.py prints the header <c>tasks,processes,processes_idle,threads,threads_idle,linear</c>, a first row
/// <c>0,0,100,0,100,0</c>, then one row per task count: the <c>_processes</c> build's average operations per second,
/// the idle share of the machine while it ran (percent), the same two for the <c>_threads</c> build, and
/// <c>linear</c>, the 1-task throughput (the better of the two builds) times the task count. Throughputs are
/// integers (<c>%d</c>), idle shares have two decimals.
/// </para>
/// <para>
/// Here a workload and its processes-mode twin (<c>page-fault1</c> and <c>page-fault1-processes</c>,
/// <see cref="WorkloadCatalog.ProcessesSuffix"/>) share one file, under the threads name: <c>threads</c> is the mean
/// ops/s of the threads-mode point at that task count, <c>processes</c> that of the processes-mode one, and a column
/// whose workload was not measured at that count is 0. The idle columns are 0: SpecVm does not measure the machine's
/// idle time. <c>linear</c> is empty when no 1-task point was measured.
/// </para>
/// </remarks>
internal static class WillItScaleCsv
{
    public const string Header = "tasks,processes,processes_idle,threads,threads_idle,linear";

    /// <summary>runtest.py's first row, before any measurement: zero tasks, an idle machine.</summary>
    public const string ZeroRow = "0,0,100,0,100,0";

    private static readonly CultureInfo Inv = CultureInfo.InvariantCulture;

    /// <summary>The file name for a test (threads-mode name), strategy and mode (predicted files say so).</summary>
    public static string FileName(string workload, string strategy, bool predicted = false) =>
        $"wis-{Safe(workload)}-{Safe(strategy)}{(predicted ? "-predicted" : string.Empty)}.csv";

    /// <summary>Every file's name and contents, in the result's point order.</summary>
    public static List<(string File, string Csv)> Build(ScalingResult r)
    {
        ArgumentNullException.ThrowIfNull(r);
        var files = new List<(string, string)>();
        // Measured and predicted points go to separate files: a result may hold both (the default comparison).
        foreach (var test in r.Points.GroupBy(p => (Test: ThreadsName(p.Workload), p.Strategy, Predicted: p.Mode == "predicted")))
        {
            var threads = test.Where(p => !IsProcesses(p.Workload)).ToDictionary(p => p.Threads, p => p.OpsPerSecond);
            var processes = test.Where(p => IsProcesses(p.Workload)).ToDictionary(p => p.Threads, p => p.OpsPerSecond);
            double? single = threads.ContainsKey(1) || processes.ContainsKey(1)
                ? Math.Max(threads.GetValueOrDefault(1), processes.GetValueOrDefault(1))
                : null;
            var sb = new StringBuilder();
            sb.Append(Header).Append('\n');
            sb.Append(ZeroRow).Append('\n');
            foreach (int tasks in threads.Keys.Union(processes.Keys).Order())
            {
                sb.Append(Inv, $"{tasks},{Ops(processes.GetValueOrDefault(tasks))},0.00,{Ops(threads.GetValueOrDefault(tasks))},0.00,");
                if (single is double one)
                {
                    sb.Append(Ops(one * tasks));
                }

                sb.Append('\n');
            }

            files.Add((FileName(test.Key.Test, test.Key.Strategy, test.Key.Predicted), sb.ToString()));
        }

        return files;
    }

    /// <summary>Writes every file into <paramref name="dir"/>; returns their names.</summary>
    public static List<string> WriteAll(ScalingResult r, string dir)
    {
        var names = new List<string>();
        foreach ((string file, string csv) in Build(r))
        {
            File.WriteAllText(Path.Combine(dir, file), csv);
            names.Add(file);
        }

        return names;
    }

    private static bool IsProcesses(string workload) => workload.EndsWith(WorkloadCatalog.ProcessesSuffix, StringComparison.Ordinal);

    private static string ThreadsName(string workload) => IsProcesses(workload) ? workload[..^WorkloadCatalog.ProcessesSuffix.Length] : workload;

    /// <summary>runtest.py's <c>%d</c>: a whole number of operations per second.</summary>
    private static string Ops(double opsPerSecond) => Math.Round(opsPerSecond, MidpointRounding.AwayFromZero).ToString("F0", Inv);

    /// <summary>A name as a file-name part: letters, digits, '-', '_' and '.' kept, anything else '_'.</summary>
    private static string Safe(string name)
    {
        var sb = new StringBuilder(name.Length);
        foreach (char c in name)
        {
            sb.Append(char.IsAsciiLetterOrDigit(c) || c is '-' or '_' or '.' ? c : '_');
        }

        return sb.ToString();
    }
}
