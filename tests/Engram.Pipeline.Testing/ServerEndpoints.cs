namespace Engram.Pipeline.Testing;

/// <summary>Where the servers answer; the AMQP URI carries the administrator's credentials.</summary>
internal sealed record ServerEndpoints(Uri RabbitMqUri, Uri ManagementUri, string CloudDbAdminConnectionString);
