// Every GraphQL operation the app sends. GraphQL Code Generator (codegen.ts) checks them
// against ../supergraph/supergraph.graphql and types their results, so `npm run build` fails
// when one no longer matches the schema.
//
// Costs stay far below the router's limit (2000 per subgraph answer, ARCHITECTURE.md
// "GraphQL"): lists ask for 12 to 24 items.

import { graphql } from '../gql';

export const VideoCardFields = graphql(`
  fragment VideoCardFields on Video {
    id
    title
    viewCount
    createdAt
    publishedAt
    owner {
      id
      displayName
    }
    playback {
      thumbnailUrl
      durationSeconds
      storyboardUrl
      storyboardVttUrl
    }
  }
`);

export const CategoriesQuery = graphql(`
  query Categories {
    categories
  }
`);

export const FeedQuery = graphql(`
  query Feed($first: Int!, $after: String) {
    feed(first: $first, after: $after) {
      nodes {
        ...VideoCardFields
      }
      pageInfo {
        hasNextPage
        endCursor
      }
    }
  }
`);

export const SearchQuery = graphql(`
  query Search($query: String!, $first: Int!, $after: String) {
    search(query: $query, first: $first, after: $after) {
      nodes {
        ...VideoCardFields
        description
      }
      pageInfo {
        hasNextPage
        endCursor
      }
    }
  }
`);

export const WatchQuery = graphql(`
  query Watch($id: ID!) {
    video(id: $id) {
      id
      title
      description
      tags
      category
      visibility
      status
      createdAt
      publishedAt
      likeCount
      viewerHasLiked
      commentCount
      viewCount
      viewerProgress {
        positionSeconds
        watchedFraction
      }
      owner {
        id
        displayName
        avatarUrl
        subscriberCount
        viewerIsSubscribed
      }
      playback {
        hlsUrl
        durationSeconds
        thumbnailUrl
        storyboardUrl
        storyboardVttUrl
        renditions {
          name
          width
          height
          bitrate
        }
      }
      processing {
        state
        playable
        error
      }
    }
  }
`);

export const RelatedQuery = graphql(`
  query Related($id: ID!, $first: Int!) {
    video(id: $id) {
      id
      related(first: $first) {
        ...VideoCardFields
      }
    }
  }
`);

export const CommentFields = graphql(`
  fragment CommentFields on Comment {
    id
    body
    videoId
    parentId
    createdAt
    editedAt
    author {
      id
      displayName
    }
  }
`);

export const CommentsQuery = graphql(`
  query Comments($id: ID!, $first: Int!, $after: String) {
    video(id: $id) {
      id
      commentCount
      comments(first: $first, after: $after) {
        nodes {
          ...CommentFields
        }
        pageInfo {
          hasNextPage
          endCursor
        }
      }
    }
  }
`);

export const ChannelQuery = graphql(`
  query Channel($id: ID!, $first: Int!, $after: String) {
    user(id: $id) {
      id
      username
      displayName
      bio
      avatarUrl
      subscriberCount
      viewerIsSubscribed
      videos(first: $first, after: $after) {
        nodes {
          ...VideoCardFields
          status
          visibility
        }
        pageInfo {
          hasNextPage
          endCursor
        }
      }
    }
  }
`);

export const MeQuery = graphql(`
  query Me {
    me {
      id
      username
      displayName
      email
      bio
      avatarUrl
    }
  }
`);

export const VideoStateQuery = graphql(`
  query VideoState($id: ID!) {
    video(id: $id) {
      id
      title
      status
      failure
      processing {
        state
        playable
        error
      }
    }
  }
`);

export const CreateVideoMutation = graphql(`
  mutation CreateVideo($input: CreateVideoInput!) {
    createVideo(input: $input) {
      video {
        id
        title
        status
        visibility
      }
      upload {
        id
        url
        expiresAt
      }
    }
  }
`);

export const RecordPlaybackMutation = graphql(`
  mutation RecordPlayback($input: PlaybackInput!) {
    recordPlayback(input: $input) {
      applied
      viewCounted
    }
  }
`);

export const LikeVideoMutation = graphql(`
  mutation LikeVideo($id: ID!) {
    likeVideo(id: $id) {
      id
      likeCount
      viewerHasLiked
    }
  }
`);

export const UnlikeVideoMutation = graphql(`
  mutation UnlikeVideo($id: ID!) {
    unlikeVideo(id: $id) {
      id
      likeCount
      viewerHasLiked
    }
  }
`);

export const AddCommentMutation = graphql(`
  mutation AddComment($videoId: ID!, $body: String!, $parentId: ID) {
    addComment(videoId: $videoId, body: $body, parentId: $parentId) {
      ...CommentFields
    }
  }
`);

export const EditCommentMutation = graphql(`
  mutation EditComment($id: ID!, $body: String!) {
    editComment(id: $id, body: $body) {
      ...CommentFields
    }
  }
`);

export const DeleteCommentMutation = graphql(`
  mutation DeleteComment($id: ID!) {
    deleteComment(id: $id)
  }
`);

export const SubscribeMutation = graphql(`
  mutation Subscribe($channelId: ID!) {
    subscribe(channelId: $channelId) {
      id
      subscriberCount
      viewerIsSubscribed
    }
  }
`);

export const UnsubscribeMutation = graphql(`
  mutation Unsubscribe($channelId: ID!) {
    unsubscribe(channelId: $channelId) {
      id
      subscriberCount
      viewerIsSubscribed
    }
  }
`);

export const UpdateProfileMutation = graphql(`
  mutation UpdateProfile($input: ProfileInput!) {
    updateProfile(input: $input) {
      id
      displayName
      bio
      avatarUrl
    }
  }
`);

export const VideoProgressSubscription = graphql(`
  subscription VideoProgress($videoId: ID!) {
    videoProgress(videoId: $videoId) {
      videoId
      stage
      percent
      rendition
      fps
      etaSeconds
      error
    }
  }
`);

export const DashboardQuery = graphql(`
  query Dashboard {
    dashboard {
      totalViews
      totalLikes
      totalComments
      videos {
        id
        title
        description
        tags
        category
        visibility
        status
        failure
        createdAt
        viewCount
        likeCount
        commentCount
        playback {
          thumbnailUrl
          durationSeconds
        }
        processing {
          state
          playable
        }
      }
    }
  }
`);

export const UpdateVideoMutation = graphql(`
  mutation UpdateVideo($id: ID!, $input: UpdateVideoInput!) {
    updateVideo(id: $id, input: $input) {
      id
      title
      description
      tags
      category
      visibility
      status
    }
  }
`);

export const DeleteVideoMutation = graphql(`
  mutation DeleteVideo($id: ID!) {
    deleteVideo(id: $id)
  }
`);

export const SubscriptionsFeedQuery = graphql(`
  query SubscriptionsFeed($first: Int!, $after: String) {
    subscriptionsFeed(first: $first, after: $after) {
      nodes {
        ...VideoCardFields
      }
      pageInfo {
        hasNextPage
        endCursor
      }
    }
  }
`);

// ---- the viewer's library (activity): history, continue watching, playlists ---------------

export const HistoryItemFields = graphql(`
  fragment HistoryItemFields on HistoryItem {
    positionSeconds
    watchedFraction
    updatedAt
    video {
      ...VideoCardFields
    }
  }
`);

export const WatchHistoryQuery = graphql(`
  query WatchHistory($first: Int!, $after: String) {
    watchHistory(first: $first, after: $after) {
      nodes {
        ...HistoryItemFields
      }
      pageInfo {
        hasNextPage
        endCursor
      }
    }
  }
`);

export const ContinueWatchingQuery = graphql(`
  query ContinueWatching($first: Int!, $after: String) {
    continueWatching(first: $first, after: $after) {
      nodes {
        ...HistoryItemFields
      }
      pageInfo {
        hasNextPage
        endCursor
      }
    }
  }
`);

export const HistoryPausedQuery = graphql(`
  query HistoryPaused {
    historyPaused
  }
`);

export const RemoveFromHistoryMutation = graphql(`
  mutation RemoveFromHistory($videoId: ID!) {
    removeFromHistory(videoId: $videoId)
  }
`);

export const ClearHistoryMutation = graphql(`
  mutation ClearHistory {
    clearHistory
  }
`);

export const SetHistoryPausedMutation = graphql(`
  mutation SetHistoryPaused($paused: Boolean!) {
    setHistoryPaused(paused: $paused)
  }
`);

/** What a list of playlists shows of each (with the first video's thumbnail as its cover). */
export const PlaylistFields = graphql(`
  fragment PlaylistFields on Playlist {
    id
    title
    description
    visibility
    itemCount
    isWatchLater
    createdAt
    owner {
      id
      displayName
    }
  }
`);

export const PlaylistCardFields = graphql(`
  fragment PlaylistCardFields on Playlist {
    ...PlaylistFields
    cover: items(first: 1) {
      nodes {
        video {
          id
          playback {
            thumbnailUrl
          }
        }
      }
    }
  }
`);

export const MyPlaylistsQuery = graphql(`
  query MyPlaylists($first: Int!, $after: String) {
    myPlaylists(first: $first, after: $after) {
      nodes {
        ...PlaylistCardFields
      }
      pageInfo {
        hasNextPage
        endCursor
      }
    }
  }
`);

/** The save menu's choices: the viewer's playlists, without covers. */
export const SaveTargetsQuery = graphql(`
  query SaveTargets {
    myPlaylists(first: 50) {
      nodes {
        ...PlaylistFields
      }
      pageInfo {
        hasNextPage
        endCursor
      }
    }
  }
`);

export const UserPlaylistsQuery = graphql(`
  query UserPlaylists($id: ID!, $first: Int!, $after: String) {
    user(id: $id) {
      id
      playlists(first: $first, after: $after) {
        nodes {
          ...PlaylistCardFields
        }
        pageInfo {
          hasNextPage
          endCursor
        }
      }
    }
  }
`);

export const PlaylistItemFields = graphql(`
  fragment PlaylistItemFields on PlaylistItem {
    addedAt
    video {
      ...VideoCardFields
    }
  }
`);

export const PlaylistQuery = graphql(`
  query Playlist($id: ID!, $first: Int!, $after: String) {
    playlist(id: $id) {
      ...PlaylistFields
      items(first: $first, after: $after) {
        nodes {
          ...PlaylistItemFields
        }
        pageInfo {
          hasNextPage
          endCursor
        }
      }
    }
  }
`);

export const WatchLaterQuery = graphql(`
  query WatchLater($first: Int!, $after: String) {
    watchLater {
      ...PlaylistFields
      items(first: $first, after: $after) {
        nodes {
          ...PlaylistItemFields
        }
        pageInfo {
          hasNextPage
          endCursor
        }
      }
    }
  }
`);

export const CreatePlaylistMutation = graphql(`
  mutation CreatePlaylist($input: CreatePlaylistInput!) {
    createPlaylist(input: $input) {
      ...PlaylistFields
    }
  }
`);

export const UpdatePlaylistMutation = graphql(`
  mutation UpdatePlaylist($id: ID!, $input: UpdatePlaylistInput!) {
    updatePlaylist(id: $id, input: $input) {
      ...PlaylistFields
    }
  }
`);

export const DeletePlaylistMutation = graphql(`
  mutation DeletePlaylist($id: ID!) {
    deletePlaylist(id: $id)
  }
`);

export const AddToPlaylistMutation = graphql(`
  mutation AddToPlaylist($playlistId: ID!, $videoId: ID!) {
    addToPlaylist(playlistId: $playlistId, videoId: $videoId) {
      id
      itemCount
    }
  }
`);

export const RemoveFromPlaylistMutation = graphql(`
  mutation RemoveFromPlaylist($playlistId: ID!, $videoId: ID!) {
    removeFromPlaylist(playlistId: $playlistId, videoId: $videoId) {
      id
      itemCount
    }
  }
`);

export const MovePlaylistItemMutation = graphql(`
  mutation MovePlaylistItem($playlistId: ID!, $videoId: ID!, $position: Int!) {
    movePlaylistItem(playlistId: $playlistId, videoId: $videoId, position: $position) {
      id
      itemCount
    }
  }
`);

export const AddToWatchLaterMutation = graphql(`
  mutation AddToWatchLater($videoId: ID!) {
    addToWatchLater(videoId: $videoId) {
      id
      itemCount
      isWatchLater
    }
  }
`);

export const RemoveFromWatchLaterMutation = graphql(`
  mutation RemoveFromWatchLater($videoId: ID!) {
    removeFromWatchLater(videoId: $videoId) {
      id
      itemCount
      isWatchLater
    }
  }
`);

// ---- creator analytics (activity; the owner only) ------------------------------------------

export const VideoAnalyticsQuery = graphql(`
  query VideoAnalytics($id: ID!, $range: AnalyticsRange!) {
    video(id: $id) {
      id
      title
      status
      owner {
        id
      }
      playback {
        durationSeconds
        thumbnailUrl
      }
      analytics(range: $range) {
        views
        watchSeconds
        averageViewSeconds
        days {
          day
          views
          watchSeconds
        }
        retention {
          percent
          share
        }
        renditions {
          rendition
          watchSeconds
          share
        }
      }
    }
  }
`);

export const ChannelAnalyticsQuery = graphql(`
  query ChannelAnalytics($range: AnalyticsRange!) {
    channelAnalytics(range: $range) {
      views
      watchSeconds
      averageViewSeconds
      days {
        day
        views
        watchSeconds
      }
      topVideos {
        views
        watchSeconds
        video {
          id
          title
          playback {
            thumbnailUrl
            durationSeconds
          }
        }
      }
    }
  }
`);
