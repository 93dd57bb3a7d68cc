using System.Diagnostics;
using SpecVm.Memory;
using SpecVm.Smp;

namespace SpecVm.Tests.Faults;

/// <summary>
/// Parks a CPU inside its next page fault, after the fault has looked the VMA up and read its sequence count and
/// before it takes any page-table lock, so that another CPU can change the address space at exactly that moment
/// (garnet's ParkedReaderThread idea, applied to a fault).
/// </summary>
/// <remarks>
/// The fault's first frame allocation is the parking spot: the CPU's per-CPU frame cache is emptied first, so the
/// allocation must refill from the global pool, whose zone lock this gate holds (<c>FrameAllocator.CloseZone</c>); the
/// CPU spins for it as Linux's <c>rmqueue_bulk</c> would, and the zone's waiter count says when it is there. Whatever
/// runs while it is parked must not allocate frames from the pool or wait for the parked CPU (no shootdown it would have
/// to answer: the zone lock is taken with interrupts off).
/// </remarks>
internal sealed class ParkedFault : IDisposable
{
    private readonly Machine _machine;
    private readonly int _cpu;
    private bool _closed;

    private ParkedFault(Machine machine, int cpu)
    {
        _machine = machine;
        _cpu = cpu;
    }

    /// <summary>Empties <paramref name="cpu"/>'s frame cache and closes the pool: that CPU's next frame allocation blocks.</summary>
    public static ParkedFault Arm(Machine machine, int cpu)
    {
        FrameAllocator frames = machine.Frames;
        var held = new List<long>();
        for (long pfn; (pfn = frames.TryAllocate(-1, FrameState.Preparing)) >= 0;)
        {
            held.Add(pfn); // The whole pool...
        }

        machine.Run(cpu, c =>
        {
            for (long pfn; (pfn = frames.TryAllocate(c.Id, FrameState.Preparing)) >= 0;)
            {
                held.Add(pfn); // ...then the CPU's cache, until it cannot refill...
            }
        });
        foreach (long pfn in held)
        {
            frames.Free(-1, pfn); // ...and everything back to the pool, none to the cache.
        }

        var gate = new ParkedFault(machine, cpu);
        frames.CloseZone();
        gate._closed = true;
        return gate;
    }

    /// <summary>Waits until the CPU has entered a fault (the counter moved) and is blocked on the closed pool.</summary>
    public void WaitUntilParked(CpuCounter faultEntered, long before, Task work) =>
        WaitUntilParked(() => _machine.Cpu(_cpu).Read(faultEntered), before, work);

    /// <summary>As above, for a strategy that counts its attempts with a registered counter.</summary>
    public void WaitUntilParked(RegisteredCounter faultEntered, long before, Task work) =>
        WaitUntilParked(() => _machine.Cpu(_cpu).Read(faultEntered), before, work);

    private void WaitUntilParked(Func<long> faultEntered, long before, Task work)
    {
        var clock = Stopwatch.StartNew();
        while (faultEntered() == before || _machine.Frames.ZoneWaiters == 0)
        {
            if (work.IsCompleted || clock.Elapsed > TimeSpan.FromSeconds(5))
            {
                Open();
                work.GetAwaiter().GetResult();
                throw new TimeoutException($"CPU {_cpu} never parked in its fault (completed: {work.IsCompleted}).");
            }

            Thread.Yield();
        }
    }

    /// <summary>Lets the parked CPU go on.</summary>
    public void Open()
    {
        if (_closed)
        {
            _closed = false;
            _machine.Frames.OpenZone();
        }
    }

    public void Dispose() => Open();
}
