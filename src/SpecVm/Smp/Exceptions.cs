namespace SpecVm.Smp;

/// <summary>Work given to a CPU threw; the CPU id says where. The CPU itself stays usable.</summary>
public sealed class CpuException : Exception
{
    /// <summary>Creates the exception.</summary>
    /// <param name="cpuId">The CPU whose work threw.</param>
    /// <param name="inner">What the work threw.</param>
    public CpuException(int cpuId, Exception inner)
        : base($"Work on CPU {cpuId} failed: {inner.GetType().Name}: {inner.Message}", inner) => CpuId = cpuId;

    /// <summary>The CPU whose work threw.</summary>
    public int CpuId { get; }
}

/// <summary>
/// The hard-lockup watchdog fired: a CPU spun with interrupts disabled for longer than
/// <see cref="MachineOptions.WatchdogTimeout"/> (the kernel's NMI watchdog reports the same). It is how SpecVm makes
/// the article's deadlock — spinning on a PTL with irqs off while its holder waits for this CPU's TLB ack — visible.
/// </summary>
public sealed class HardLockupException : Exception
{
    /// <summary>Creates the exception.</summary>
    /// <param name="cpuId">The spinning CPU.</param>
    /// <param name="spinning">How long it had spun with interrupts disabled.</param>
    /// <param name="detail">What it was spinning on.</param>
    public HardLockupException(int cpuId, TimeSpan spinning, string detail)
        : base($"Hard lockup on CPU {cpuId}: spinning with interrupts disabled for {spinning.TotalSeconds:F1} s ({detail}).")
    {
        CpuId = cpuId;
        Spinning = spinning;
    }

    /// <summary>The CPU that spun.</summary>
    public int CpuId { get; }

    /// <summary>How long it had spun.</summary>
    public TimeSpan Spinning { get; }
}

/// <summary>
/// A TLB shootdown waited longer than twice <see cref="MachineOptions.WatchdogTimeout"/> for acknowledgements (thrown in
/// Debug builds of SpecVm; Release builds record a violation in <see cref="Machine.Violations"/> and keep waiting).
/// </summary>
public sealed class ShootdownTimeoutException : Exception
{
    /// <summary>Creates the exception.</summary>
    /// <param name="cpuId">The initiating CPU.</param>
    /// <param name="waited">How long it had waited.</param>
    /// <param name="silent">The CPUs that had not acknowledged.</param>
    public ShootdownTimeoutException(int cpuId, TimeSpan waited, string silent)
        : base($"TLB shootdown on CPU {cpuId} waited {waited.TotalSeconds:F1} s for acknowledgements from {silent}.")
    {
        CpuId = cpuId;
        Waited = waited;
    }

    /// <summary>The initiating CPU.</summary>
    public int CpuId { get; }

    /// <summary>How long it had waited.</summary>
    public TimeSpan Waited { get; }
}
