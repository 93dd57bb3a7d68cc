namespace SpecVm.Smp;

/// <summary>
/// A thread running as one of a machine's CPUs (<see cref="Machine.Attach"/>); disposing it, on the same thread,
/// gives the CPU back to its own thread.
/// </summary>
public sealed class CpuAttachment : IDisposable
{
    private readonly Machine _machine;
    private readonly Task _park;
    private readonly ManualResetEventSlim _parked;
    private readonly ManualResetEventSlim _release;
    private readonly int _threadId = Environment.CurrentManagedThreadId;
    private int _disposed;

    internal CpuAttachment(Machine machine, Cpu cpu, Task park, ManualResetEventSlim parked, ManualResetEventSlim release)
    {
        _machine = machine;
        Cpu = cpu;
        _park = park;
        _parked = parked;
        _release = release;
    }

    /// <summary>The attached CPU.</summary>
    public Cpu Cpu { get; }

    /// <summary>Gives the CPU back to its own thread. Calling it twice is fine.</summary>
    /// <exception cref="InvalidOperationException">Called on another thread than the one that attached.</exception>
    public void Dispose()
    {
        if (Volatile.Read(ref _disposed) != 0)
        {
            return;
        }

        if (Environment.CurrentManagedThreadId != _threadId)
        {
            throw new InvalidOperationException($"CPU {Cpu.Id} was attached on thread {_threadId}; detach it on that thread (it is thread {Environment.CurrentManagedThreadId}).");
        }

        _machine.Detach(Cpu, _park, _release);

        // Plain write after Detach's fences: only the attaching thread gets here.
        _disposed = 1;
        _parked.Dispose();
        _release.Dispose();
    }
}
