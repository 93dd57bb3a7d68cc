using BenchmarkDotNet.Attributes;
using SpecVm.Sync;

namespace SpecVm.Benchmarks.Suites;

/// <summary>
/// The uncontended read-side cost of each Sync primitive on one thread: one acquire/release pair per operation,
/// against <see cref="ReaderWriterLockSlim"/>'s read lock as the baseline, so the Ratio column reads as "times the
/// cost of the BCL's reader lock".
/// </summary>
/// <remarks>
/// <para>
/// Single-threaded on purpose: this is the price a fault pays when nobody else is around (the kernbench-style
/// uncontended cost, docs/references.md). What one shared count word costs under many CPUs (cache-line bouncing) is a
/// thread-scaling question for SpecVm's own harness, not for BenchmarkDotNet (its issue #147).
/// </para>
/// <para>Every method must report 0 B allocated: these are hot-path operations (DESIGN.md section 5).</para>
/// </remarks>
[Config(typeof(BenchConfig))]
public class SyncBenchmarks
{
    private const int Cpu = 0;

    private readonly ReaderWriterLockSlim _rwlock = new(LockRecursionPolicy.NoRecursion);
    private readonly RwSemaphore _mmapLock = new();
    private SeqCount _sequence;
    private PtLock _ptl;
    private Srcu _srcu = null!;

    /// <summary>Creates the SRCU domain and leaves the sequence count at an even, non-zero value, as after one write.</summary>
    [GlobalSetup]
    public void Setup()
    {
        _srcu = new Srcu(1);
        _sequence.WriteBegin();
        _sequence.WriteEnd();
    }

    /// <summary>Stops the SRCU worker and frees its per-CPU slots.</summary>
    [GlobalCleanup]
    public void Cleanup()
    {
        _srcu.Dispose();
        _rwlock.Dispose();
    }

    /// <summary>Baseline: <see cref="ReaderWriterLockSlim.EnterReadLock"/> + <see cref="ReaderWriterLockSlim.ExitReadLock"/>.</summary>
    [Benchmark(Baseline = true)]
    public void ReaderWriterLockSlimRead()
    {
        _rwlock.EnterReadLock();
        _rwlock.ExitReadLock();
    }

    /// <summary>A seqcount read section with nothing inside: <see cref="SeqCount.TryReadBegin"/> + <see cref="SeqCount.ReadRetry"/>.</summary>
    [Benchmark]
    public bool SeqCountRead()
    {
        bool even = _sequence.TryReadBegin(out int start);
        return even & !_sequence.ReadRetry(start);
    }

    /// <summary><see cref="Srcu.ReadLock"/> + <see cref="Srcu.ReadUnlock"/> on CPU 0.</summary>
    [Benchmark]
    public void SrcuReadLockUnlock()
    {
        int idx = _srcu.ReadLock(Cpu);
        _srcu.ReadUnlock(Cpu, idx);
    }

    /// <summary><see cref="Srcu.ReadLock"/> + <see cref="Srcu.ReadUnlockLocal"/> on CPU 0: the full section without the atomic unlock.</summary>
    [Benchmark]
    public void SrcuReadLockUnlockLocal()
    {
        int idx = _srcu.ReadLock(Cpu);
        _srcu.ReadUnlockLocal(Cpu, idx);
    }

    /// <summary>
    /// <see cref="Srcu.ReadLockLite"/> + <see cref="Srcu.ReadUnlockLocal"/> on CPU 0: the per-VMA path's section, no
    /// fence (its ordering is paid by grace periods).
    /// </summary>
    [Benchmark]
    public void SrcuReadLockLiteUnlock()
    {
        int idx = _srcu.ReadLockLite(Cpu);
        _srcu.ReadUnlockLocal(Cpu, idx);
    }

    /// <summary>The mmap lock taken for read: <see cref="RwSemaphore.ReadLock"/> + <see cref="RwSemaphore.ReadUnlock"/>.</summary>
    [Benchmark]
    public void RwSemaphoreRead()
    {
        _mmapLock.ReadLock();
        _mmapLock.ReadUnlock();
    }

    /// <summary>The speculative path's PTL: <see cref="PtLock.TryLock"/> + <see cref="PtLock.Unlock"/>.</summary>
    [Benchmark]
    public bool PtLockTryLockUnlock()
    {
        bool taken = _ptl.TryLock(Cpu);
        if (taken)
        {
            _ptl.Unlock(Cpu);
        }

        return taken;
    }

    /// <summary>The classic path's PTL: <see cref="PtLock.Lock"/> + <see cref="PtLock.Unlock"/>.</summary>
    [Benchmark]
    public void PtLockLockUnlock()
    {
        _ptl.Lock(Cpu, null);
        _ptl.Unlock(Cpu);
    }
}
