namespace SpecVm.Sync;

/// <summary>
/// What a waiting context does while it waits: the seam between the lock primitives (which know nothing of CPUs) and
/// the machine model (whose CPUs must keep serving interrupts while they spin, and go lazy before they sleep).
/// </summary>
/// <remarks>
/// A CPU of the machine model implements this: <see cref="Relax"/> serves pending IPIs when the CPU's interrupts are
/// enabled (Linux's spin loops run with irqs on unless the caller disabled them, and that is exactly the difference
/// between a spinning CPU that answers a TLB shootdown and one that deadlocks); <see cref="PrepareToBlock"/> asserts
/// that interrupts are enabled (sleeping with irqs off is a bug) and marks the CPU lazy so shootdowns skip it;
/// <see cref="FinishBlock"/> leaves lazy mode and catches up with missed TLB flushes.
/// </remarks>
public interface ISpinWaiter
{
    /// <summary>One iteration of a spin-wait: serve what may be served (interrupts) and relax the core.</summary>
    void Relax();

    /// <summary>Called right before the waiter sleeps (blocks the OS thread).</summary>
    void PrepareToBlock();

    /// <summary>Called right after the waiter wakes up from sleeping.</summary>
    void FinishBlock();
}
