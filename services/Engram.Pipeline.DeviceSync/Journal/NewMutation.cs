namespace Engram.Pipeline.DeviceSync.Journal;

/// <summary>A change to record: upsert or delete of a session, observation, prompt or relation.</summary>
/// <param name="Entity"><c>session</c>, <c>observation</c>, <c>prompt</c> or <c>relation</c>.</param>
/// <param name="Op"><c>upsert</c> or <c>delete</c>; a delete is hard when the payload says <c>"hard_delete": true</c>.</param>
/// <param name="EntityKey">The entity's sync_id.</param>
/// <param name="Payload">The entity as JSON text.</param>
/// <param name="Project">The project the entity belongs to, when it has one.</param>
public sealed record NewMutation(string Entity, string Op, string EntityKey, string Payload, string? Project = null);
