using SpecVm.Mm;
namespace SpecVm.Faults;

/// <summary>The built-in fault strategies by name.</summary>
public static class StrategyCatalog
{
    /// <summary>Every built-in strategy name (speculative-spin reproduces the article's deadlock hazard: not for scaling runs).</summary>
    public static IReadOnlyList<string> Names { get; } = ["mmap-lock", "speculative", "per-vma-lock", "speculative-spin", "speculative-refcount"];

    /// <summary>The strategies a default comparison runs.</summary>
    public static IReadOnlyList<string> DefaultNames { get; } = ["mmap-lock", "speculative", "per-vma-lock"];

    /// <summary>Creates the strategy called <paramref name="name"/>, or returns null for an unknown name.</summary>
    /// <param name="name">A name from <see cref="Names"/> (case-insensitive).</param>
    public static FaultStrategy? TryCreate(string name)
    {
        ArgumentNullException.ThrowIfNull(name);
        return name.ToLowerInvariant() switch
        {
            "mmap-lock" => new MmapLockStrategy(),
            "speculative" => new SpeculativeStrategy(),
            "per-vma-lock" => new PerVmaLockStrategy(),
            "speculative-spin" => new SpeculativeStrategy { SpinOnPtl = true },
            "speculative-refcount" => new SpeculativeRefcountStrategy(),
            _ => null,
        };
    }
}
