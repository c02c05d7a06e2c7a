/**
 * Entry point for the local transports: OCI layouts, OCI and Docker archives,
 * and ACIs (files, http(s) URLs and appc names found by discovery). Registry references (docker://) and
 * store names go elsewhere (registry/, the store).
 *
 * Each transport module is loaded on first use so that `gantry run` of a
 * stored image pays for none of them.
 */
import type { Context } from '../../context.js';
import { GantryError } from '../../errors.js';
import type { ImageSource } from '../model.js';
import type { ImageReference } from '../reference.js';

/**
 * Opens the source for a local reference. Cheap checks happen here (the path
 * exists, is a layout or an archive); manifest work, and the choice of
 * platform, wait for resolve().
 */
export async function openLocalSource(ref: ImageReference, ctx: Context): Promise<ImageSource> {
  switch (ref.kind) {
    case 'oci-layout': {
      const { openOciLayout } = await import('./oci-layout.js');
      return openOciLayout(ref, ctx);
    }
    case 'oci-archive': {
      const { openOciArchive } = await import('./archive.js');
      return openOciArchive(ref, ctx);
    }
    case 'docker-archive': {
      const { openDockerArchive } = await import('./archive.js');
      return openDockerArchive(ref, ctx);
    }
    case 'aci-file':
    case 'aci-url':
    case 'appc': {
      const { openAci } = await import('./aci.js');
      return openAci(ref, ctx);
    }
    default:
      throw new GantryError('INTERNAL', `openLocalSource: "${ref.kind}" references are not local images`);
  }
}
