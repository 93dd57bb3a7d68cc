namespace SpecVm.Memory;

/// <summary>Physical memory is exhausted: every frame is in use. Recoverable: free memory (unmap) and retry.</summary>
public sealed class OutOfFramesException : InvalidOperationException
{
    /// <summary>Creates the exception.</summary>
    public OutOfFramesException()
        : base("SpecVm physical memory is exhausted: no free frames. Unmap memory or create the Machine with more memory (MachineOptions.MemoryBytes).")
    {
    }

    /// <summary>Creates the exception with a message.</summary>
    /// <param name="message">The message.</param>
    public OutOfFramesException(string message)
        : base(message)
    {
    }

    /// <summary>Creates the exception with a message and inner exception.</summary>
    /// <param name="message">The message.</param>
    /// <param name="inner">The inner exception.</param>
    public OutOfFramesException(string message, Exception inner)
        : base(message, inner)
    {
    }
}
