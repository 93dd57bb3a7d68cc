using System.Globalization;
using SpecVm.Smp;
using SpecVm.Workloads;

namespace SpecVm.Scaling;

/// <summary>
/// Checks where an experiment's CPU threads will run before it measures anything, and says in words what would make
/// a curve measure the host instead of the model: more CPU threads than the cores this process may use, or two CPU
/// threads on SMT siblings of one physical core.
/// </summary>
/// <remarks>
/// A run of N measured threads builds N + <see cref="Workload.BackgroundTasks"/> CPUs and pins CPU i to the i-th core
/// of <see cref="Affinity.AllowedCores"/> (modulo their number). With more CPUs than cores some CPU threads time-share
/// a core: a spinning CPU then burns its sibling's time slice and a shootdown waits for a descheduled CPU. Two CPUs on
/// SMT siblings share one core's execution units, so per-thread throughput falls for a reason no lock explains
/// (will-it-scale's runtest.py warns "SMT enabled, suggest disabling" for the same reason). Siblings are read from
/// <see cref="Affinity.ThreadSiblings"/>; where the OS does not say, only the core count is checked.
/// </remarks>
public static class PlacementCheck
{
    /// <summary>
    /// The warnings for running <paramref name="workloads"/> at <paramref name="threadCounts"/> on this process's cores
    /// (one line each, no "warning:" prefix); empty when every CPU thread gets a core of its own.
    /// </summary>
    /// <param name="workloads">The workloads (their background tasks count as CPUs).</param>
    /// <param name="threadCounts">The measured thread counts.</param>
    public static IReadOnlyList<string> Warnings(IEnumerable<Workload> workloads, IEnumerable<int> threadCounts)
    {
        ArgumentNullException.ThrowIfNull(workloads);
        ArgumentNullException.ThrowIfNull(threadCounts);
        return Warnings(workloads.Select(w => (w.Name, w.BackgroundTasks)).ToList(), threadCounts.ToList(), Affinity.AllowedCores, Affinity.ThreadSiblings);
    }

    /// <summary>The check itself, on a given core set and topology (tests plant both).</summary>
    /// <param name="workloads">Workload names and their background tasks.</param>
    /// <param name="threadCounts">The measured thread counts.</param>
    /// <param name="allowed">The cores CPU threads are pinned to, in pinning order.</param>
    /// <param name="siblings">A core's SMT siblings (itself included), or null where unknown.</param>
    internal static IReadOnlyList<string> Warnings(
        IReadOnlyList<(string Name, int Background)> workloads,
        IReadOnlyList<int> threadCounts,
        IReadOnlyList<int> allowed,
        Func<int, IReadOnlyList<int>?> siblings)
    {
        var warnings = new List<string>();
        if (workloads.Count == 0 || threadCounts.Count == 0 || allowed.Count == 0)
        {
            return warnings;
        }

        int maxThreads = threadCounts.Max();
        int cores = allowed.Count;
        string coreList = CoreList(allowed);

        // Too many CPU threads: one line per (measured, background) shape, naming its workloads.
        foreach (var shape in workloads.GroupBy(w => w.Background).OrderBy(g => g.Key))
        {
            int cpus = maxThreads + shape.Key;
            if (cpus <= cores)
            {
                continue;
            }

            string names = string.Join(", ", shape.Select(w => w.Name).Distinct());
            string parts = shape.Key == 0
                ? Invariant($"{maxThreads} measured")
                : Invariant($"{maxThreads} measured + {shape.Key} background");
            warnings.Add(
                Invariant($"{names}: {cpus} CPU threads ({parts}) but this process may use {cores} core{(cores == 1 ? string.Empty : "s")} ({coreList}): ")
                + "some CPU threads time-share a core, so spinning wastes time slices and shootdowns wait for descheduled CPUs; "
                + "those points measure the host's scheduler as much as the model.");
        }

        // SMT siblings among the cores the largest run is pinned to (CPU i on allowed[i]).
        int largest = Math.Min(cores, maxThreads + workloads.Max(w => w.Background));
        var owner = new Dictionary<int, int>(); // Core -> the first pinned CPU's core that shares its physical core.
        for (int i = 0; i < largest; i++)
        {
            int core = allowed[i];
            if (owner.TryGetValue(core, out int first))
            {
                warnings.Add(
                    Invariant($"from {i + 1} CPU threads on, two of them run on SMT siblings of one physical core (cores {first} and {core}): ")
                    + "they share its execution units, so per-thread throughput falls for a reason no lock explains; "
                    + "disable SMT or restrict the process to one hardware thread per core (taskset) for clean curves.");
                break;
            }

            IReadOnlyList<int>? group = siblings(core);
            if (group == null)
            {
                continue; // The OS does not say; the core-count check above is all there is.
            }

            foreach (int s in group)
            {
                owner.TryAdd(s, core);
            }
        }

        return warnings;
    }

    /// <summary>"0-3, 8" style: the cores, with runs collapsed.</summary>
    private static string CoreList(IReadOnlyList<int> cores)
    {
        int[] sorted = [.. cores.Order()];
        var parts = new List<string>();
        for (int i = 0; i < sorted.Length;)
        {
            int j = i;
            while (j + 1 < sorted.Length && sorted[j + 1] == sorted[j] + 1)
            {
                j++;
            }

            parts.Add(j == i ? Invariant($"{sorted[i]}") : Invariant($"{sorted[i]}-{sorted[j]}"));
            i = j + 1;
        }

        return "cores " + string.Join(",", parts);
    }

    private static string Invariant(FormattableString s) => s.ToString(CultureInfo.InvariantCulture);
}
