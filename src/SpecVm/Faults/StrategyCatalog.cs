using SpecVm.Mm;
namespace SpecVm.Faults;

/// <summary>
/// The built-in fault strategies by name: the one list. The CLI, the benchmark suites and the tests enumerate it, so a
/// new strategy is its own file plus one line here. The first entry is the baseline that reports divide by (a result
/// lists its strategies in the order they were asked for, and the default comparison asks in this order).
/// </summary>
public static class StrategyCatalog
{
    /// <summary>One line per strategy: its name, how to make one, whether the default comparison runs it, and whether it is correct.</summary>
    private static readonly Entry[] Entries =
    [
        new("mmap-lock", static () => new MmapLockStrategy(), Default: true),
        new("speculative", static () => new SpeculativeStrategy(), Default: true),
        new("per-vma-lock", static () => new PerVmaLockStrategy(), Default: true),
        new("speculative-spin", static () => new SpeculativeStrategy { SpinOnPtl = true }, Reproducer: true),
        new("speculative-refcount", static () => new SpeculativeRefcountStrategy()),
        new("speculative-mmseq", static () => new SpeculativeMmSeqStrategy()),
    ];

    /// <summary>Every built-in strategy name (speculative-spin reproduces the article's deadlock hazard: not for scaling runs).</summary>
    public static IReadOnlyList<string> Names { get; } = [.. Entries.Select(e => e.Name)];

    /// <summary>The strategies a default comparison runs.</summary>
    public static IReadOnlyList<string> DefaultNames { get; } = [.. Entries.Where(e => e.Default).Select(e => e.Name)];

    /// <summary>
    /// Every strategy that handles faults correctly: all of <see cref="Names"/> but the reproducers of a hazard
    /// (speculative-spin deadlocks on purpose). What a suite that runs every strategy runs.
    /// </summary>
    public static IReadOnlyList<string> CorrectNames { get; } = [.. Entries.Where(e => !e.Reproducer).Select(e => e.Name)];

    /// <summary>The baseline of ratios in reports when a result holds it first: the catalog's first strategy (mmap-lock).</summary>
    public static string Baseline => Entries[0].Name;

    /// <summary>Creates the strategy called <paramref name="name"/>, or returns null for an unknown name.</summary>
    /// <param name="name">A name from <see cref="Names"/> (case-insensitive).</param>
    public static FaultStrategy? TryCreate(string name)
    {
        ArgumentNullException.ThrowIfNull(name);
        foreach (Entry e in Entries)
        {
            if (string.Equals(e.Name, name, StringComparison.OrdinalIgnoreCase))
            {
                return e.Create();
            }
        }

        return null;
    }

    /// <summary>Creates the strategy called <paramref name="name"/>.</summary>
    /// <param name="name">A name from <see cref="Names"/> (case-insensitive).</param>
    /// <exception cref="ArgumentException">No strategy has that name.</exception>
    public static FaultStrategy Create(string name) =>
        TryCreate(name) ?? throw new ArgumentException($"Unknown strategy '{name}'; known: {string.Join(", ", Names)}.", nameof(name));

    private sealed record Entry(string Name, Func<FaultStrategy> Create, bool Default = false, bool Reproducer = false);
}
