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
internal interface ISpinWaiter
{
    /// <summary>One iteration of a spin-wait: serve what may be served (interrupts) and relax the core.</summary>
    void Relax();

    /// <summary>Called right before the waiter sleeps (blocks the OS thread).</summary>
    void PrepareToBlock();

    /// <summary>Called right after the waiter wakes up from sleeping.</summary>
    void FinishBlock();

    /// <summary>
    /// The id of the CPU that waits, or -1 (the default) when the waiter is not one of a machine's CPUs. With it,
    /// <see cref="Srcu.Synchronize"/> refuses to wait on a CPU that is inside a read section of that domain (it would
    /// wait for itself forever). A machine's <c>Cpu</c> implements it with its own <c>Id</c>.
    /// </summary>
    int Id => -1;
}
