namespace SpecVm.Simulation;

/// <summary>A virtual-time simulation deadlocked or livelocked; the message names every CPU's state.</summary>
public sealed class SimulatedDeadlockException : Exception
{
    /// <summary>Creates the exception.</summary>
    public SimulatedDeadlockException()
    {
    }

    /// <summary>Creates the exception with a message.</summary>
    /// <param name="message">What deadlocked, with each CPU's state.</param>
    public SimulatedDeadlockException(string message)
        : base(message)
    {
    }

    /// <summary>Creates the exception with a message and a cause.</summary>
    /// <param name="message">What deadlocked.</param>
    /// <param name="inner">The cause.</param>
    public SimulatedDeadlockException(string message, Exception inner)
        : base(message, inner)
    {
    }
}
