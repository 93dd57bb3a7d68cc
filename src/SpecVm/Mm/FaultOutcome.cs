using SpecVm.Smp;

namespace SpecVm.Mm;

/// <summary>What a <see cref="FaultOutcome"/> counts: how reports add outcomes up.</summary>
/// <remarks>
/// A strategy's success rate is its <see cref="Success"/> counts over its <see cref="Attempt"/> counts when it declares
/// an attempt counter, and over its <see cref="Success"/> plus <see cref="Abort"/> counts otherwise (every attempt then
/// ends in exactly one of those). <see cref="Retry"/> and <see cref="Other"/> counts are events inside or beside an
/// attempt; <see cref="Fallback"/> is a total that usually equals the sum of the aborts.
/// </remarks>
public enum FaultOutcomeKind
{
    /// <summary>Entries into the strategy's own path: the denominator of its success rate, not an outcome itself.</summary>
    Attempt = 0,

    /// <summary>The fault was handled on the strategy's own path.</summary>
    Success = 1,

    /// <summary>The strategy's path gave up for the named reason (and handed the fault on, usually to the mmap lock).</summary>
    Abort = 2,

    /// <summary>The strategy's path started over (not an end: each retry is counted, then the attempt goes on).</summary>
    Retry = 3,

    /// <summary>Faults handed to another path, whatever the reason (a total beside the aborts).</summary>
    Fallback = 4,

    /// <summary>Anything else worth a count (an access error decided on the strategy's own path, say).</summary>
    Other = 5,
}

/// <summary>
/// One outcome a fault strategy declares (<see cref="FaultStrategy.Outcomes"/>): its name as reports print it, its
/// <see cref="FaultOutcomeKind"/>, and the per-CPU counter that counts it — a <see cref="CpuCounter"/>, or a
/// <see cref="RegisteredCounter"/> for a strategy that brings its own vocabulary.
/// </summary>
/// <remarks>
/// The harness reads each declared counter after a run and writes name, kind and count into the result; reports list
/// whatever a result holds, so a new strategy's outcomes appear in them without a change anywhere else. Names are
/// short and kernel-style: "success", "abort: seq-changed", "fallback".
/// </remarks>
public sealed class FaultOutcome
{
    private readonly CpuCounter _counter;
    private readonly RegisteredCounter? _registered;

    /// <summary>An outcome counted by a built-in <see cref="CpuCounter"/>.</summary>
    /// <param name="name">The name reports print ("abort: ptl-busy").</param>
    /// <param name="kind">What it counts.</param>
    /// <param name="counter">The counter that counts it.</param>
    /// <param name="description">One sentence on what it means, for readers of the code (may be empty).</param>
    public FaultOutcome(string name, FaultOutcomeKind kind, CpuCounter counter, string description)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(name);
        ArgumentNullException.ThrowIfNull(description);
        if ((uint)counter >= (uint)CpuCounter.Count)
        {
            throw new ArgumentOutOfRangeException(nameof(counter), counter, "Unknown counter.");
        }

        Name = name;
        Kind = kind;
        _counter = counter;
        Description = description;
    }

    /// <summary>An outcome counted by a <see cref="RegisteredCounter"/> (a strategy's own vocabulary).</summary>
    /// <param name="name">The name reports print ("abort: odd").</param>
    /// <param name="kind">What it counts.</param>
    /// <param name="counter">The counter that counts it.</param>
    /// <param name="description">One sentence on what it means, for readers of the code (may be empty).</param>
    public FaultOutcome(string name, FaultOutcomeKind kind, RegisteredCounter counter, string description)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(name);
        ArgumentNullException.ThrowIfNull(counter);
        ArgumentNullException.ThrowIfNull(description);
        Name = name;
        Kind = kind;
        _registered = counter;
        Description = description;
    }

    /// <summary>The name reports print.</summary>
    public string Name { get; }

    /// <summary>What it counts.</summary>
    public FaultOutcomeKind Kind { get; }

    /// <summary>One sentence on what it means (may be empty).</summary>
    public string Description { get; }

    /// <summary>The built-in counter that counts it, or null when a <see cref="RegisteredCounter"/> does.</summary>
    public CpuCounter? Counter => _registered == null ? _counter : null;

    /// <summary>The registered counter that counts it, or null when a built-in <see cref="CpuCounter"/> does.</summary>
    public RegisteredCounter? Registered => _registered;

    /// <summary>Its total in <paramref name="counters"/>.</summary>
    /// <param name="counters">A snapshot (or a difference of two) of a machine's counters.</param>
    public long Read(CounterSnapshot counters)
    {
        ArgumentNullException.ThrowIfNull(counters);
        return _registered == null ? counters[_counter] : counters[_registered];
    }

    /// <summary>Its total over every CPU of <paramref name="machine"/>.</summary>
    /// <param name="machine">The machine.</param>
    public long Read(Machine machine)
    {
        ArgumentNullException.ThrowIfNull(machine);
        return _registered == null ? machine.Counter(_counter) : machine.Counter(_registered);
    }

    /// <inheritdoc/>
    public override string ToString() => $"{Name} ({Kind})";
}
