namespace SpecVm.Smp;

/// <summary>
/// A per-CPU event counter registered at run time, for code outside SpecVm's own vocabulary (a fault strategy's abort
/// reasons, say) that should not have to add a member to <see cref="CpuCounter"/>. It is counted exactly as a
/// <see cref="CpuCounter"/> is: <see cref="Cpu.Count(RegisteredCounter)"/> adds to the CPU's own slot without
/// atomics, in the same per-CPU block, so it costs no allocation and touches no shared line.
/// </summary>
/// <remarks>
/// <para>
/// Every machine's per-CPU counter block has a fixed number of slots (<see cref="Capacity"/> in all); the
/// <see cref="CpuCounter"/> members take the first ones and registrations take the rest, process-wide, in order. A
/// registration is therefore valid on every machine, past and future, and a strategy instance can move between
/// machines without re-registering. Register once per name (a <c>static readonly</c> field of the strategy's type):
/// registering a name again returns the counter already registered under it, so names should be qualified by their
/// owner ("speculative-mmseq/abort: odd"). Slots are never given back.
/// </para>
/// <para>
/// Only CPUs count (owner-only writes); readers on other threads get racy but untorn snapshots, as with
/// <see cref="Cpu.Read(CpuCounter)"/>.
/// </para>
/// </remarks>
public sealed class RegisteredCounter
{
    /// <summary>Slots in each CPU's counter block: the <see cref="CpuCounter"/> members and every registration together (1 KiB per CPU).</summary>
    public const int Capacity = 128;

    private static readonly Lock SyncRoot = new();
    private static readonly Dictionary<string, RegisteredCounter> ByName = new(StringComparer.Ordinal);

    private RegisteredCounter(string name, int index)
    {
        Name = name;
        Index = index;
    }

    /// <summary>The name it was registered under.</summary>
    public string Name { get; }

    /// <summary>The slot in each CPU's counter block (at or above <see cref="CpuCounter.Count"/>).</summary>
    internal int Index { get; }

    /// <summary>How many slots are left for registrations.</summary>
    public static int Available
    {
        get
        {
            lock (SyncRoot)
            {
                return Capacity - (int)CpuCounter.Count - ByName.Count;
            }
        }
    }

    /// <summary>Registers a counter called <paramref name="name"/>, or returns the one already registered under it.</summary>
    /// <param name="name">A name unique to its owner, for example "my-strategy/abort: busy".</param>
    /// <exception cref="InvalidOperationException">Every slot is taken.</exception>
    public static RegisteredCounter Register(string name)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(name);
        lock (SyncRoot)
        {
            if (ByName.TryGetValue(name, out RegisteredCounter? existing))
            {
                return existing;
            }

            int index = (int)CpuCounter.Count + ByName.Count;
            if (index >= Capacity)
            {
                throw new InvalidOperationException($"No per-CPU counter slot left for '{name}': all {Capacity - (int)CpuCounter.Count} registrations are taken.");
            }

            // Published to other threads by the lock's release, and afterwards only through this immutable object.
            var counter = new RegisteredCounter(name, index);
            ByName.Add(name, counter);
            return counter;
        }
    }

    /// <summary>Every counter registered so far, in registration order.</summary>
    public static IReadOnlyList<RegisteredCounter> All
    {
        get
        {
            lock (SyncRoot)
            {
                return [.. ByName.Values.OrderBy(c => c.Index)];
            }
        }
    }

    /// <inheritdoc/>
    public override string ToString() => Name;
}
