namespace SpecVm.Sync;

/// <summary>
/// A wait inside a Sync primitive (an <see cref="RwSemaphore"/> slow path, an <see cref="Srcu"/> grace period) outlasted
/// its watchdog (Linux's hung-task detector, "task blocked for more than 120 seconds", reports the same). Nothing was
/// acquired and nothing changed: the waiter undid its registration before throwing.
/// </summary>
/// <remarks>
/// The watchdog is on by default in Debug builds of SpecVm (<see cref="Watchdog.DefaultTimeout"/>) and off in Release,
/// where a wait is unbounded as in the kernel; each primitive's <c>WatchdogTimeout</c> property turns it on or off.
/// </remarks>
public sealed class HungTaskException : TimeoutException
{
    /// <summary>Creates the exception.</summary>
    /// <param name="what">What the task waited for, and the likely misuse.</param>
    /// <param name="waited">How long it had waited.</param>
    public HungTaskException(string what, TimeSpan waited)
        : base($"Hung task: waited {waited.TotalSeconds:F1} s for {what}.") => Waited = waited;

    /// <summary>How long the task had waited.</summary>
    public TimeSpan Waited { get; }
}
